-- W3C trace context of the span that made the record ready (its checked batch). A writer chunk
-- holds records of one or more checked batches; its span links to each of those spans, so one
-- trace shows which Kafka batches a HubSpot write came from.
ALTER TABLE records ADD COLUMN traceparent text;
