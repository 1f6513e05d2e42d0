"""Request-time observation of served models: metrics now; drift, outliers and feedback later."""
