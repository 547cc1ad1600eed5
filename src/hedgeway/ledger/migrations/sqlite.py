"""The SQLite dialect's steps, in order (append only; the same names as postgres.py)."""

from __future__ import annotations

from hedgeway.ledger.migrations.step import Step

# Columns in Record field order. `id` is a surrogate key. request_id is unique from step 004 on, and every
# insert says ON CONFLICT (request_id) DO NOTHING: a retried or replayed batch whose commit did land is a
# no-op instead of a duplicate, and never makes a whole batch fail forever.
SQLITE: list[Step] = [
    Step("001_create_requests", (
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL,
            ts REAL NOT NULL,
            endpoint TEXT NOT NULL,
            model_name TEXT NOT NULL,
            deployment TEXT,
            provider TEXT,
            status INTEGER NOT NULL,
            key_id TEXT,
            team TEXT,
            error_type TEXT,
            stream INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cost TEXT NOT NULL DEFAULT '0',
            latency_ms REAL NOT NULL DEFAULT 0,
            ttft_ms REAL,
            overhead_ms REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 1,
            route TEXT,
            cache TEXT
        )""",
        "CREATE INDEX requests_ts ON requests (ts)",
        "CREATE INDEX requests_model_ts ON requests (model_name, ts)",
        "CREATE INDEX requests_key_ts ON requests (key_id, ts)",
        "CREATE INDEX requests_request_id ON requests (request_id)",
    )),
    Step("002_requests_saved", ("ALTER TABLE requests ADD COLUMN saved TEXT NOT NULL DEFAULT '0'",)),
    # Virtual keys (hedgeway.keys): JSON columns as TEXT in both dialects so one code path reads them;
    # every write bumps key_ring_version and stamps the rows it touches with the new value, so a replica
    # polls one number and then reads only the rows that changed.
    Step("003_keys_users_teams", (
        """CREATE TABLE teams (
            id TEXT PRIMARY KEY,
            models TEXT,
            budgets TEXT NOT NULL DEFAULT '[]',
            limits TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            version INTEGER NOT NULL
        )""",
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            models TEXT,
            budgets TEXT NOT NULL DEFAULT '[]',
            limits TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            version INTEGER NOT NULL
        )""",
        """CREATE TABLE keys (
            id TEXT PRIMARY KEY,
            digest TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            name TEXT,
            user_id TEXT REFERENCES users (id),
            team_id TEXT REFERENCES teams (id),
            models TEXT,
            budgets TEXT NOT NULL DEFAULT '[]',
            limits TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            expires_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            revoked_at REAL,
            version INTEGER NOT NULL
        )""",
        "CREATE INDEX keys_user ON keys (user_id)",
        "CREATE INDEX keys_team ON keys (team_id)",
        "CREATE INDEX keys_version ON keys (version)",
        """CREATE TABLE retired_digests (
            digest TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            retired_at REAL NOT NULL,
            version INTEGER NOT NULL
        )""",
        "CREATE TABLE key_ring_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
        "INSERT INTO key_ring_version (id, version) VALUES (1, 0)",
    )),
    # Replaying a spooled batch after an outage must be idempotent: one row per request_id. Duplicates
    # a retried batch may have left behind (its commit did land) are dropped first, keeping the oldest.
    Step("004_requests_request_id_unique", (
        "DELETE FROM requests WHERE id NOT IN (SELECT min(id) FROM requests GROUP BY request_id)",
        "DROP INDEX IF EXISTS requests_request_id",
        "CREATE UNIQUE INDEX requests_request_id_unique ON requests (request_id)",
    )),
    # Canary ramps (hedgeway.canary): one row per canary, changed only by a conditional UPDATE on `seq`
    # (exactly one replica wins a transition); per-replica cumulative counts of the current stage; and
    # every transition as an event.
    Step("007_canaries", (
        """CREATE TABLE canaries (
            name TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            candidate TEXT NOT NULL,
            settings TEXT NOT NULL,
            state TEXT NOT NULL,
            stage INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            stage_started REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE canary_counts (
            name TEXT NOT NULL,
            seq INTEGER NOT NULL,
            replica TEXT NOT NULL,
            requests INTEGER NOT NULL,
            errors INTEGER NOT NULL,
            sla INTEGER NOT NULL,
            checked INTEGER NOT NULL,
            agreement REAL NOT NULL,
            PRIMARY KEY (name, seq, replica)
        )""",
        """CREATE TABLE canary_events (
            ts REAL NOT NULL,
            name TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT NOT NULL,
            stage INTEGER NOT NULL,
            share REAL NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE INDEX canary_events_name ON canary_events (name, ts)",
    )),
    # Opt-in prompt logging (ledger.log_prompts): NULL unless enabled.
    Step("008_requests_prompt", ("ALTER TABLE requests ADD COLUMN prompt TEXT",)),
    # Eval runs (hedgeway.evals): one row per (run, case) with the answer, and one per (run, case, scorer);
    # score NULL = the scorer could not score (e.g. an unparseable judge reply), counted, never guessed.
    Step("009_eval_results", (
        """CREATE TABLE eval_results (
            run TEXT NOT NULL,
            case_id TEXT NOT NULL,
            model TEXT NOT NULL,
            ts REAL NOT NULL,
            output TEXT,
            error TEXT,
            latency_ms REAL NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost TEXT,
            request_id TEXT,
            deployment TEXT,
            cache TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            PRIMARY KEY (run, case_id)
        )""",
        """CREATE TABLE eval_scores (
            run TEXT NOT NULL,
            case_id TEXT NOT NULL,
            scorer TEXT NOT NULL,
            score REAL,
            detail TEXT,
            PRIMARY KEY (run, case_id, scorer)
        )""",
    )),
    # Shadow traffic (hedgeway.shadow): one row per copied request, the two answers compared.
    Step("010_shadow_results", (
        """CREATE TABLE shadow_results (
            request_id TEXT PRIMARY KEY,
            ts REAL NOT NULL,
            model TEXT NOT NULL,
            candidate TEXT NOT NULL,
            primary_deployment TEXT,
            shadow_deployment TEXT,
            primary_latency_ms REAL NOT NULL,
            shadow_latency_ms REAL NOT NULL,
            primary_cost TEXT NOT NULL,
            shadow_cost TEXT NOT NULL,
            rouge_l REAL,
            similarity REAL,
            error TEXT,
            primary_answer TEXT,
            shadow_answer TEXT
        )""",
        "CREATE INDEX shadow_results_ts ON shadow_results (ts)",
    )),
    # Usage estimates (hedgeway.tokens): 1 when the upstream reported no usage (llama.cpp streams, a client
    # that hung up) and the row's tokens and cost were counted by Hedgeway.
    Step("011_requests_usage_estimated",
         ("ALTER TABLE requests ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0",)),
    # The Responses API's store (hedgeway.ledger.responses): one row per stored response, its own input items
    # and the Response object (JSON), readable only by its tenant until expires_at.
    Step("012_response_store", (
        """CREATE TABLE response_store (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            previous_id TEXT,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            input TEXT NOT NULL,
            response TEXT NOT NULL
        )""",
        "CREATE INDEX response_store_expires ON response_store (expires_at)",
    )),
    # Route labels (hedgeway.routing.learner, /v1/feedback, `hedgeway router labels`): one row per label of a
    # routed name. strong_wins NULL = no label (an unparsed verdict, a judge error), kept for the counts.
    # embedding: the prompt's MiniLM vector (base64 float32); prompt: only with ledger.log_prompts.
    Step("013_route_labels", (
        """CREATE TABLE route_labels (
            route TEXT NOT NULL,
            id TEXT NOT NULL,
            ts REAL NOT NULL,
            source TEXT NOT NULL,
            request_id TEXT,
            key_id TEXT,
            strong_model TEXT,
            weak_model TEXT,
            served TEXT,
            strong REAL,
            weak REAL,
            strong_wins REAL,
            verdict TEXT NOT NULL,
            detail TEXT,
            embedding TEXT,
            features TEXT,
            prompt TEXT,
            PRIMARY KEY (route, id)
        )""",
        "CREATE INDEX route_labels_ts ON route_labels (route, ts)",
    )),
]
