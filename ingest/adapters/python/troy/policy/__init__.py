"""Policies: the rules troy checks steps against."""
