"""Pure Spark DataFrame -> DataFrame feature functions and the feature registry."""
