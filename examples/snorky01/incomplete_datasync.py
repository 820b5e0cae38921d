# Snorky 0.1's doc/examples/incomplete_datasync.py; only the import prefix changed.
from snorky_sync.services.datasync import DataSyncService, DataSyncBackend

datasync = DataSyncService("datasync", [
    # dealer list (will be explained in the next chapter)
])
datasync_backend = DataSyncBackend("datasync_backend", datasync)
