//! The tables, written once for every backend: only types that SQLite and
//! PostgreSQL map alike (BigInt, Integer, Text, Bool; times as epoch ms).
#![allow(
    missing_docs,
    reason = "diesel's table! macro generates a public type per column"
)]

diesel::table! {
    /// Registered services and their latest status.
    services (id) {
        id -> BigInt,
        name -> Text,
        url -> Text,
        interval_s -> BigInt,
        timeout_s -> BigInt,
        expected_statuses -> Nullable<Text>,
        paused -> Bool,
        last_status -> Text,
        last_check -> Nullable<BigInt>,
        last_latency_ms -> Nullable<BigInt>,
        last_scheduled_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        version -> BigInt,
        failure_threshold -> Integer,
        success_threshold -> Integer,
        retry_interval_s -> Nullable<BigInt>,
        channel_ids -> Nullable<Text>,
        check_options -> Text,
        push_token_hash -> Nullable<Text>,
        timeout_follows_interval -> Bool,
        tags -> Text,
        regions -> Text,
        quorum -> Nullable<Integer>,
    }
}

diesel::table! {
    /// A service's tags, one per row (the `services.tags` list, kept in step
    /// by triggers): what `?tag=` filters on, by its (tag, service_id) key.
    service_tags (tag, service_id) {
        tag -> Text,
        service_id -> BigInt,
    }
}

diesel::table! {
    /// One row per check.
    health_logs (id) {
        id -> BigInt,
        service_id -> BigInt,
        status -> Text,
        latency_ms -> BigInt,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        scheduled_at -> BigInt,
        checked_at -> BigInt,
        cert_expires_at -> Nullable<BigInt>,
        region -> Text,
    }
}

diesel::table! {
    /// One row per status transition.
    state_changes (id) {
        id -> BigInt,
        service_id -> BigInt,
        old_status -> Text,
        new_status -> Text,
        latency_ms -> BigInt,
        scheduled_at -> BigInt,
        changed_at -> BigInt,
    }
}

diesel::table! {
    /// Per service and hour: checks, failures, latency sum and maximum.
    hourly_rollups (service_id, hour_start) {
        service_id -> BigInt,
        hour_start -> BigInt,
        checks -> BigInt,
        failures -> BigInt,
        latency_sum_ms -> BigInt,
        latency_max_ms -> BigInt,
        degraded -> BigInt,
    }
}

diesel::table! {
    /// One row: the id of the newest log counted in the rollups.
    rollup_progress (id) {
        id -> BigInt,
        last_log_id -> BigInt,
    }
}

diesel::joinable!(health_logs -> services (service_id));
diesel::joinable!(state_changes -> services (service_id));
diesel::joinable!(hourly_rollups -> services (service_id));
diesel::joinable!(service_tags -> services (service_id));

diesel::table! {
    /// API keys, by hash.
    api_keys (id) {
        id -> BigInt,
        name -> Text,
        scope -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Where alerts go: a kind and its settings (secrets included, as JSON).
    channels (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        config -> Text,
        all_services -> Bool,
        remind_every_s -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// The outbox: one row per (status change, channel), and its delivery.
    alerts (id) {
        id -> BigInt,
        service_id -> Nullable<BigInt>,
        channel_id -> BigInt,
        event -> Text,
        old_status -> Text,
        new_status -> Text,
        scheduled_at -> BigInt,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        next_attempt_at -> BigInt,
        held_until -> Nullable<BigInt>,
        first_attempt_at -> Nullable<BigInt>,
        group_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Maintenance windows: one-off (start, end) or recurring (cron).
    maintenance_windows (id) {
        id -> BigInt,
        name -> Text,
        service_ids -> Nullable<Text>,
        tag -> Nullable<Text>,
        start_at -> Nullable<BigInt>,
        end_at -> Nullable<BigInt>,
        cron -> Nullable<Text>,
        duration_s -> Nullable<BigInt>,
        timezone -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    channels,
    alerts,
    maintenance_windows,
    services,
    service_tags,
    health_logs,
    state_changes,
    api_keys,
    hourly_rollups,
    rollup_progress
);

diesel::table! {
    /// Public status pages.
    status_pages (id) {
        id -> BigInt,
        slug -> Text,
        title -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// The services each status page lists, in order.
    status_page_services (page_id, service_id) {
        page_id -> BigInt,
        service_id -> BigInt,
        position -> Integer,
    }
}

diesel::joinable!(status_page_services -> status_pages (page_id));
diesel::joinable!(status_page_services -> services (service_id));
diesel::allow_tables_to_appear_in_same_query!(status_pages, status_page_services, services);
