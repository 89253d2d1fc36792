"""The /confusion page's pure functions: histogram, order, render, figure, drill-down, metrics."""
