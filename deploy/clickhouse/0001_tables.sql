-- The tables the sink writes and the analytics commands read.
--
-- Every table the sink writes is a ReplacingMergeTree keyed on the ids of the events it
-- comes from, with the event's stream sequence as the version: a batch delivered twice
-- stores the same keys twice until a merge, so reads use FINAL or argMax. Sorting keys and
-- partitions depend only on the event, never on when it was written.
--
-- This file runs on every ClickHouse troy supports, down to 18.16: no TTL, codecs, skip
-- indexes, LowCardinality or Map here (see 0002).

CREATE TABLE IF NOT EXISTS steps (
    agent String,
    trace_id String,
    run String,
    seq UInt32,
    step_id String,
    type Enum8('llm_call' = 1, 'tool_call' = 2, 'decision' = 3, 'observation' = 4),
    tool String,
    description String,
    input String,
    output String,
    metadata Nested(key String, value String),
    parent_step_id String,
    ts DateTime('UTC'),
    agent_version String,
    environment String,
    policy String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (agent, trace_id, run, seq);

CREATE TABLE IF NOT EXISTS traces (
    agent String,
    trace_id String,
    run String,
    agent_version String,
    environment String,
    policy_id String,
    policy String,
    risk_score UInt8,
    steps UInt32,
    tool_calls UInt32,
    violations UInt32,
    critical UInt32,
    high UInt32,
    medium UInt32,
    low UInt32,
    rule_errors UInt32,
    first_step_at DateTime('UTC'),
    last_step_at DateTime('UTC'),
    explanations String,
    llm_model String,
    llm_calls UInt32,
    llm_cached UInt32,
    llm_tokens UInt64,
    summary String,
    metadata Nested(key String, value String),
    finished_at DateTime('UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(first_step_at)
ORDER BY (agent, trace_id, run);

CREATE TABLE IF NOT EXISTS violations (
    agent String,
    trace_id String,
    run String,
    step_index UInt32,
    step_id String,
    rule_id String,
    severity Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4),
    weight UInt16,
    rule_description String,
    details String,
    ts DateTime('UTC'),
    agent_version String,
    environment String,
    policy String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (agent, trace_id, run, step_index, rule_id);

CREATE TABLE IF NOT EXISTS explanations (
    agent String,
    trace_id String,
    run String,
    step_index UInt32,
    step_id String,
    summary String,
    rationale String,
    alternatives Array(String),
    risk_factors Array(String),
    data_accessed Array(String),
    error String,
    explained_at DateTime('UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(explained_at)
ORDER BY (agent, trace_id, run, step_index);

CREATE TABLE IF NOT EXISTS rules (
    policy String,
    policy_id String,
    rule_id String,
    severity Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4),
    weight UInt16,
    description String,
    first_seen DateTime('UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (policy, rule_id);

CREATE TABLE IF NOT EXISTS drift_findings (
    detected_at DateTime('UTC'),
    agent String,
    kind String,
    subject String,
    baseline_start DateTime('UTC'),
    baseline_end DateTime('UTC'),
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    baseline_value Float64,
    window_value Float64,
    statistic Float64,
    p_value Float64,
    threshold Float64,
    drifted UInt8,
    detail String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(detected_at)
ORDER BY (agent, detected_at, kind, subject);
