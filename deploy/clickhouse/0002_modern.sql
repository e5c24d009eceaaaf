-- requires: 21.8
--
-- What a current ClickHouse does better: dictionary-encoded low-cardinality columns,
-- compression codecs for the large text columns, skip indexes for time ranges and tool or
-- rule filters, and a retention period for drift findings, which can be recomputed. An
-- older server skips this step; it runs once the server is upgraded.

ALTER TABLE steps
    MODIFY COLUMN tool LowCardinality(String),
    MODIFY COLUMN agent_version LowCardinality(String),
    MODIFY COLUMN environment LowCardinality(String),
    MODIFY COLUMN policy LowCardinality(String),
    MODIFY COLUMN description String CODEC(ZSTD(3)),
    MODIFY COLUMN input String CODEC(ZSTD(3)),
    MODIFY COLUMN output String CODEC(ZSTD(3));

ALTER TABLE steps ADD INDEX IF NOT EXISTS steps_ts ts TYPE minmax GRANULARITY 4;

ALTER TABLE steps ADD INDEX IF NOT EXISTS steps_tool tool TYPE set(1024) GRANULARITY 4;

ALTER TABLE traces
    MODIFY COLUMN agent_version LowCardinality(String),
    MODIFY COLUMN environment LowCardinality(String),
    MODIFY COLUMN policy_id LowCardinality(String),
    MODIFY COLUMN policy LowCardinality(String),
    MODIFY COLUMN llm_model LowCardinality(String),
    MODIFY COLUMN summary String CODEC(ZSTD(3));

ALTER TABLE traces ADD INDEX IF NOT EXISTS traces_version agent_version TYPE set(256) GRANULARITY 4;

ALTER TABLE violations
    MODIFY COLUMN agent_version LowCardinality(String),
    MODIFY COLUMN environment LowCardinality(String),
    MODIFY COLUMN policy LowCardinality(String),
    MODIFY COLUMN details String CODEC(ZSTD(3));

ALTER TABLE violations ADD INDEX IF NOT EXISTS violations_ts ts TYPE minmax GRANULARITY 4;

ALTER TABLE violations ADD INDEX IF NOT EXISTS violations_rule rule_id TYPE bloom_filter GRANULARITY 4;

ALTER TABLE explanations
    MODIFY COLUMN summary String CODEC(ZSTD(3)),
    MODIFY COLUMN rationale String CODEC(ZSTD(3));

ALTER TABLE drift_findings MODIFY TTL detected_at + INTERVAL 1 YEAR;
