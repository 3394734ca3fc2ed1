"""The rollups: compaction of clean hours, days and day prefixes (``compaction``), their SQL (``sql``), each report's split (``split``)."""
