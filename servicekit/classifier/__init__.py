"""One image classifier behind DiagnosisService: a service supplies its domain and its model."""
