"""payql: a GraphQL payments service for marketplaces."""
