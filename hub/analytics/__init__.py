"""Permit analytics: the plant's safety KPIs, their alerts and root causes, charts and the report."""
