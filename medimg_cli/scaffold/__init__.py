"""`medimg new-service`: scaffolds a disease service package and its deployment entries."""
