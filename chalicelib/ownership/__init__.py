"""A person's data and the owner's: who a person is and their erasure (``people``), the export, and their API (``api``)."""
