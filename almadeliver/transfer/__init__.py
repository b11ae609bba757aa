"""Transfer stage: download plans, parallel resumable downloads, safe untar, the journal."""
