"""What every page shares: landing page, health probe, base templates, styles, error pages."""
