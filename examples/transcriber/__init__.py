"""A live meeting transcriber: joins by the join link, records, writes who said what to a file."""
