// Placeholder: the dashboard page replaces it.
