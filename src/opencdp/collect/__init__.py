"""Collection: the Segment-compatible HTTP tracking API and the writer that makes events durable."""
