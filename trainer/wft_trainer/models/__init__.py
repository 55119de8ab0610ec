"""Base models: where they come from (hub, S3, folders; transformers or faster-whisper), Whisper's
vocabularies built offline, and the faster-whisper (CTranslate2) import and export."""
