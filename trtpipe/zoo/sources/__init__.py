"""Model sources of the zoo, one module per library; importing a module registers its models."""
