# Sourced by the azd hooks (POSIX sh): what both need.
#
# REBUILDER_HOOK_ATTEMPTS (default 6) bounds every wait; REBUILDER_HOOK_BACKOFF_SECONDS (default 10) is
# the first pause, doubled after each attempt up to REBUILDER_HOOK_BACKOFF_CAP_SECONDS (default 60):
# 10, 20, 40, 60, 60 s by default. The hooks say what they wait for each time.

fail() {
  echo "error: $*" >&2
  exit 1
}

attempts() {
  echo "${REBUILDER_HOOK_ATTEMPTS:-6}"
}

# The pause after attempt $1 (1-based).
backoff() {
  delay=${REBUILDER_HOOK_BACKOFF_SECONDS:-10}
  cap=${REBUILDER_HOOK_BACKOFF_CAP_SECONDS:-60}
  n=1
  while [ "$n" -lt "$1" ]; do
    delay=$((delay * 2))
    n=$((n + 1))
  done
  [ "$delay" -gt "$cap" ] && delay=$cap
  echo "$delay"
}

# azd's subscription, not whichever the Azure CLI has as its default: every az call after this one
# acts on it.
select_subscription() {
  if [ -z "${AZURE_SUBSCRIPTION_ID:-}" ]; then
    fail "AZURE_SUBSCRIPTION_ID is not set: run this hook through azd (azd up / azd provision), or export the subscription id azd deploys to"
  fi
  az account set --subscription "$AZURE_SUBSCRIPTION_ID" ||
    fail "cannot select subscription $AZURE_SUBSCRIPTION_ID in the Azure CLI: az login to its tenant first"
}

# retry WHAT PATTERN COMMAND...: runs COMMAND until it succeeds. While its output matches PATTERN (an
# extended regular expression) it waits, saying it waits for WHAT; any other failure, or the last
# attempt, fails the hook with COMMAND's output.
retry() {
  what=$1
  pattern=$2
  shift 2
  attempt=1
  max=$(attempts)
  while :; do
    if out=$("$@" 2>&1); then
      [ -z "$out" ] || printf '%s\n' "$out"
      return 0
    fi
    if ! printf '%s\n' "$out" | grep -Eq "$pattern"; then
      printf '%s\n' "$out" >&2
      fail "$1 $2 $3 failed (its output is above)"
    fi
    if [ "$attempt" -ge "$max" ]; then
      printf '%s\n' "$out" >&2
      fail "gave up after $max attempts waiting for $what"
    fi
    delay=$(backoff "$attempt")
    echo "waiting ${delay}s for $what (attempt $attempt of $max)"
    sleep "$delay"
    attempt=$((attempt + 1))
  done
}
