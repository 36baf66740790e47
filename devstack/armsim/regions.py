"""Azure region names: ARM takes `eastus2` and often answers "East US 2"."""

from __future__ import annotations

from .casing import fold

DISPLAY_NAMES = {
    "eastus": "East US",
    "eastus2": "East US 2",
    "westus": "West US",
    "westus2": "West US 2",
    "westus3": "West US 3",
    "centralus": "Central US",
    "northcentralus": "North Central US",
    "southcentralus": "South Central US",
    "westcentralus": "West Central US",
    "canadacentral": "Canada Central",
    "canadaeast": "Canada East",
    "brazilsouth": "Brazil South",
    "northeurope": "North Europe",
    "westeurope": "West Europe",
    "uksouth": "UK South",
    "ukwest": "UK West",
    "francecentral": "France Central",
    "germanywestcentral": "Germany West Central",
    "swedencentral": "Sweden Central",
    "switzerlandnorth": "Switzerland North",
    "norwayeast": "Norway East",
    "polandcentral": "Poland Central",
    "italynorth": "Italy North",
    "spaincentral": "Spain Central",
    "uaenorth": "UAE North",
    "southafricanorth": "South Africa North",
    "centralindia": "Central India",
    "southindia": "South India",
    "eastasia": "East Asia",
    "southeastasia": "Southeast Asia",
    "japaneast": "Japan East",
    "japanwest": "Japan West",
    "koreacentral": "Korea Central",
    "australiaeast": "Australia East",
    "australiasoutheast": "Australia Southeast",
    "usgovvirginia": "USGov Virginia",
    "chinanorth3": "China North 3",
}


def normalise(region: str) -> str:
    """'East US 2', 'eastus2' and 'EASTUS2' are the same region."""
    return fold("".join(region.split()))


def display(region: str) -> str:
    key = normalise(region)
    return DISPLAY_NAMES.get(key, region)


def is_known(region: str) -> bool:
    return normalise(region) in DISPLAY_NAMES
