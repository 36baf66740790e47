"""The HTTP API (DESIGN §5), independent of the Functions types: an `ApiRequest` in, an `HttpResult`
out. `routes` is the one table of routes (roles, parameters, handlers) that the blueprint, the pipeline
and the OpenAPI document are built from; errors become problem+json in `problems`, nowhere else."""
