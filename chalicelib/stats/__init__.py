"""The read side: the stats API (``api``), its query string (``params``), the reports (``reports``) and their SQL (``sql``)."""
