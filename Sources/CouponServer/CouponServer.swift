import ArgumentParser
import CouponService
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

@main
struct CouponServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coupon-server",
        abstract: "First-come-first-served coupon issuance on PostgreSQL.",
        version: couponServiceVersion,
        subcommands: [Serve.self, Migrate.self],
        defaultSubcommand: Serve.self)
}

/// Options every subcommand shares: where the database is and how much to log.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "postgres://user:password@host:port/database (env: DATABASE_URL).")
    var givenDatabaseURL: String?

    @Option(help: "How much to log; debug logs every request (env: LOG_LEVEL).")
    var logLevel = Environment.value("LOG_LEVEL", or: Logger.Level.info)

    @Option(help: "json writes one JSON object per line (env: LOG_FORMAT).")
    var logFormat = Environment.value("LOG_FORMAT", or: LogFormat.text)

    var databaseURL: String { Environment.value(givenDatabaseURL, or: "DATABASE_URL") ?? "" }

    func validate() throws {
        guard !databaseURL.isEmpty else { throw ValidationError("set --database-url or DATABASE_URL") }
    }

    /// Sets the process-wide log format, then returns the command's logger.
    func logger() -> Logger {
        let level = logLevel
        switch logFormat {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = TextLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        var logger = Logger(label: "coupon-server")
        logger.logLevel = level
        return logger
    }
}

enum LogFormat: String, CaseIterable, ExpressibleByArgument {
    case text, json
}

extension Logger.Level: @retroactive ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}

/// `coupon-server serve`: the command line is the application's arguments, as in Hummingbird's
/// examples; every default is stated here, once.
struct Serve: AsyncParsableCommand, AppArguments {
    static let configuration = CommandConfiguration(abstract: "Serve the HTTP API (the default).")

    @OptionGroup var common: CommonOptions

    @Option(help: "Address to listen on (env: COUPON_HOST).")
    var host = Environment.value("COUPON_HOST", or: "127.0.0.1")

    @Option(help: "Port to listen on (env: COUPON_PORT).")
    var port = Environment.value("COUPON_PORT", or: 8080)

    @Option(
        name: .customLong("admin-token"),
        help: "Bearer token for admin routes, at least 32 bytes; none closes them. Seen by `ps`: prefer --admin-token-file (env: COUPON_ADMIN_TOKEN).")
    var givenAdminToken: String?

    @Option(
        name: .customLong("admin-token-file"),
        help: "File holding the admin token, or two (one per line, both valid: a rotation), re-read every second (env: COUPON_ADMIN_TOKEN_FILE).")
    var givenAdminTokenFile: String?

    @Option(
        name: .customLong("checkout-token"),
        help: "Bearer token of the checkout, at least 32 bytes: with --auth-jwks it may read, redeem and restore any user's ticket (env: COUPON_CHECKOUT_TOKEN).")
    var givenCheckoutToken: String?

    @Option(
        name: .customLong("checkout-token-file"),
        help: "File holding the checkout token, or two (one per line, both valid: a rotation), re-read every second (env: COUPON_CHECKOUT_TOKEN_FILE).")
    var givenCheckoutTokenFile: String?

    @Option(
        name: .customLong("events-token-file"),
        help: "File holding the events' reader token (or two, one per line: a rotation), re-read every second: it may read GET /v1/events, as the admin may (env: COUPON_EVENTS_TOKEN_FILE).")
    var givenEventsTokenFile: String?

    @Option(help: "Most events in one webhook delivery (env: COUPON_WEBHOOK_BATCH).")
    var webhookBatch = Environment.value("COUPON_WEBHOOK_BATCH", or: 100)

    @Option(help: "Seconds a webhook endpoint has to answer 2xx before the delivery is retried (env: COUPON_WEBHOOK_TIMEOUT).")
    var webhookTimeout = Environment.value("COUPON_WEBHOOK_TIMEOUT", or: Duration.seconds(10))

    @Option(help: "Seconds an endpoint may fail before it is given up; its events stay in the feed (env: COUPON_WEBHOOK_GIVE_UP).")
    var webhookGiveUp = Environment.value("COUPON_WEBHOOK_GIVE_UP", or: Duration.seconds(72 * 3600))

    @Option(help: "Seconds events are kept once every live endpoint has them (env: COUPON_EVENTS_RETENTION).")
    var eventsRetention = Environment.value("COUPON_EVENTS_RETENTION", or: Duration.seconds(7 * 24 * 3600))

    @Option(
        name: .customLong("auth-jwks"),
        help: "JWKS file (RFC 7517) of the public keys that sign users' tokens: user routes then need a bearer JWT; re-read when it changes. Without it, serve needs --trust-user-ids (env: COUPON_AUTH_JWKS).")
    var givenAuthJWKS: String?

    @Option(
        name: .customLong("auth-jwks-url"),
        help: "The identity provider's JWKS URL (https; http only to a loopback host), instead of --auth-jwks: fetched at start, every 5 minutes, and at once for a token whose 'kid' is unknown (at most every 5 s); the last good keys kept while it is down (env: COUPON_AUTH_JWKS_URL).")
    var givenAuthJWKSURL: String?

    @Flag(
        name: .customLong("trust-user-ids"),
        help: "Without --auth-jwks: trust the user_id of the body and path, as behind a gateway that authenticates the users; serve refuses to start with neither (env: COUPON_TRUST_USER_IDS=1).")
    var givenTrustUserIDs = false

    @Flag(
        name: .customLong("public-metrics"),
        help: "Serve GET /metrics (open coupons, remaining tickets) on the public port rather than on --metrics-port (env: COUPON_PUBLIC_METRICS=1).")
    var givenPublicMetrics = false

    @Option(name: .customLong("auth-issuer"), help: "The 'iss' users' tokens must name; required with --auth-jwks (env: COUPON_AUTH_ISSUER).")
    var givenAuthIssuer: String?

    @Option(name: .customLong("auth-audience"), help: "The 'aud' users' tokens must name; required with --auth-jwks (env: COUPON_AUTH_AUDIENCE).")
    var givenAuthAudience: String?

    @Option(help: "The claim of a token that names the user (env: COUPON_AUTH_USER_CLAIM).")
    var authUserClaim = Environment.value("COUPON_AUTH_USER_CLAIM", or: "sub")

    @Option(help: "Seconds a user's token may still be valid for at most: a later 'exp' is refused (env: COUPON_AUTH_MAX_TOKEN_LIFETIME).")
    var authMaxTokenLifetime = Environment.value("COUPON_AUTH_MAX_TOKEN_LIFETIME", or: Duration.seconds(24 * 3600))

    @Option(help: "Seconds a request waits for the database before it gets 503 (env: COUPON_DB_TIMEOUT).")
    var databaseTimeout = Environment.value("COUPON_DB_TIMEOUT", or: Duration.seconds(3))

    @Option(help: "Largest number of pooled database connections (env: COUPON_POOL_SIZE).")
    var poolSize = Environment.value("COUPON_POOL_SIZE", or: 20)

    @Option(help: "Seconds to keep serving after SIGTERM, with /readyz at 503, before the server stops accepting (env: COUPON_SHUTDOWN_DRAIN).")
    var shutdownDrain = Environment.value("COUPON_SHUTDOWN_DRAIN", or: Duration.seconds(2))

    @Option(help: "Largest group of requests for one coupon issued in one transaction; 1 turns grouping off (env: COUPON_GROUP_SIZE).")
    var groupSize = Environment.value("COUPON_GROUP_SIZE", or: 512)

    @Option(
        name: .customLong("listener-database-url"),
        help: "Where the catalogue listener connects when not --database-url: LISTEN needs a session, not a transaction-mode pooler (env: COUPON_LISTENER_DATABASE_URL).")
    var givenListenerDatabaseURL: String?

    @Option(help: "Seconds a connection may send nothing, mid-request too, before it is closed (env: COUPON_IDLE_TIMEOUT).")
    var idleTimeout = Environment.value("COUPON_IDLE_TIMEOUT", or: Duration.seconds(10))

    @Option(help: "Seconds a request's body may take to arrive whole after its head; then 408 and the connection closes (env: COUPON_REQUEST_TIMEOUT).")
    var requestTimeout = Environment.value("COUPON_REQUEST_TIMEOUT", or: Duration.seconds(10))

    @Option(help: "Most connections open at once; more wait in the accept queue. Keep it under the open-files limit (env: COUPON_MAX_CONNECTIONS).")
    var maxConnections = Environment.value("COUPON_MAX_CONNECTIONS", or: 10_000)

    @Option(
        name: .customLong("metrics-port"),
        help: "Serve GET /metrics and /readyz in detail on this port, for the internal network; 9464 by default, one per instance of a host (env: COUPON_METRICS_PORT).")
    var givenMetricsPort: Int?

    /// The metrics' own port unless `--public-metrics`.
    static let defaultMetricsPort = 9464
    var trustsUserIDs: Bool { givenTrustUserIDs || Environment.flag("COUPON_TRUST_USER_IDS") }
    var publicMetrics: Bool { givenPublicMetrics || Environment.flag("COUPON_PUBLIC_METRICS") }
    var metricsPort: Int? {
        publicMetrics ? nil : givenMetricsPort ?? Environment.value("COUPON_METRICS_PORT", or: Self.defaultMetricsPort)
    }
    var databaseURL: String { common.databaseURL }
    var logLevel: Logger.Level { common.logLevel }
    /// A file is read when the application is built (one that does not read stops the command there),
    /// then every second.
    var adminToken: TokenSource? {
        get throws {
            try Environment.secret(
                givenAdminToken, "COUPON_ADMIN_TOKEN", file: givenAdminTokenFile, "COUPON_ADMIN_TOKEN_FILE", name: "admin token")
        }
    }
    var checkoutToken: TokenSource? {
        get throws {
            try Environment.secret(
                givenCheckoutToken, "COUPON_CHECKOUT_TOKEN", file: givenCheckoutTokenFile, "COUPON_CHECKOUT_TOKEN_FILE",
                name: "checkout token")
        }
    }
    var eventsToken: TokenSource? {
        get throws {
            try Environment.secret(nil, "COUPON_EVENTS_TOKEN", file: givenEventsTokenFile, "COUPON_EVENTS_TOKEN_FILE", name: "events token")
        }
    }
    var events: EventSettings {
        EventSettings(webhookBatch: webhookBatch, webhookTimeout: webhookTimeout, webhookGiveUp: webhookGiveUp, retention: eventsRetention)
    }
    /// `validate()` has refused what `jwksSource()` cannot read.
    var authJWKS: JWKSSource? { try? jwksSource() }

    /// The JWKS the flags name: the provider's URL (checked) or a file; both is a mistake.
    func jwksSource() throws -> JWKSSource? {
        let file = Environment.value(givenAuthJWKS, or: "COUPON_AUTH_JWKS")
        guard let url = Environment.value(givenAuthJWKSURL, or: "COUPON_AUTH_JWKS_URL") else { return file.map(JWKSSource.file) }
        guard file == nil else {
            throw ValidationError("--auth-jwks and --auth-jwks-url exclude each other: the keys come from one place")
        }
        do { return try JWKSSource.url(url) } catch { throw ValidationError("\(error)") }
    }
    var authIssuer: String? { Environment.value(givenAuthIssuer, or: "COUPON_AUTH_ISSUER") }
    var authAudience: String? { Environment.value(givenAuthAudience, or: "COUPON_AUTH_AUDIENCE") }

    var listenerDatabaseURL: String? { Environment.value(givenListenerDatabaseURL, or: "COUPON_LISTENER_DATABASE_URL") }

    func run() async throws {
        let logger = common.logger()
        let drain = ShutdownDrain(duration: shutdownDrain, logger: logger)
        let app = try await buildApplication(self, drain: drain)
        // The drain comes after the application, so SIGTERM reaches it first.
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: app), .init(service: drain)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    func validate() throws {
        let keys = try jwksSource()
        if keys != nil, authIssuer == nil || authAudience == nil {
            throw ValidationError("--auth-jwks and --auth-jwks-url need --auth-issuer and --auth-audience")
        }
        switch (keys != nil, trustsUserIDs) {
        case (false, false):
            throw ValidationError(
                """
                who are the users? Either verify their JWTs (--auth-jwks FILE or --auth-jwks-url URL, with --auth-issuer ISS \
                --auth-audience AUD), \
                or say that a gateway in front authenticates them and the service may trust the user_id of the body \
                and path (--trust-user-ids, COUPON_TRUST_USER_IDS=1)
                """)
        case (true, true):
            throw ValidationError("--trust-user-ids and --auth-jwks(-url) exclude each other: with a JWKS the tokens name the users")
        default:
            break
        }
        if publicMetrics, givenMetricsPort != nil || Environment.value(nil, or: "COUPON_METRICS_PORT") != nil {
            throw ValidationError("--public-metrics and --metrics-port exclude each other: /metrics is served on one of them")
        }
        guard (1...65535).contains(port) || port == 0 else { throw ValidationError("--port must be 0 to 65535") }
        guard databaseTimeout > .zero else { throw ValidationError("--database-timeout must be positive") }
        guard poolSize > 0 else { throw ValidationError("--pool-size must be positive") }
        guard shutdownDrain >= .zero else { throw ValidationError("--shutdown-drain must not be negative") }
        guard (1...10_000).contains(groupSize) else { throw ValidationError("--group-size must be 1 to 10000") }
        guard idleTimeout > .zero else { throw ValidationError("--idle-timeout must be positive") }
        guard authMaxTokenLifetime > .zero else { throw ValidationError("--auth-max-token-lifetime must be positive") }
        guard requestTimeout > .zero else { throw ValidationError("--request-timeout must be positive") }
        guard maxConnections > 0 else { throw ValidationError("--max-connections must be positive") }
        guard (1...1_000).contains(webhookBatch) else { throw ValidationError("--webhook-batch must be 1 to 1000") }
        guard webhookTimeout > .zero else { throw ValidationError("--webhook-timeout must be positive") }
        guard webhookGiveUp > .zero else { throw ValidationError("--webhook-give-up must be positive") }
        guard eventsRetention > .zero else { throw ValidationError("--events-retention must be positive") }
        if let metricsPort {
            guard (1...65535).contains(metricsPort), metricsPort != port else {
                throw ValidationError("--metrics-port must be 1 to 65535 and not --port")
            }
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the SQL migrations (the default), or show their state.",
        subcommands: [Apply.self, Status.self],
        defaultSubcommand: Apply.self)

    struct Source: ParsableArguments {
        @Option(help: "Folder of NNNN_name.sql files (and functions/name.sql); by default the migrations built into this binary (env: COUPON_MIGRATIONS).")
        var migrations: String?
        @Option(help: "Seconds a statement waits for a table's lock before the migration fails, to be run again (default 5).")
        var lockTimeout: Double = 5

        func runner(logger: Logger) throws -> MigrationRunner {
            let folder = Environment.value(migrations, or: "COUPON_MIGRATIONS").map { URL(filePath: $0, directoryHint: .isDirectory) }
            return MigrationRunner(
                migrations: try folder.map(Migration.load) ?? Migration.embedded(), lockTimeout: .milliseconds(Int(lockTimeout * 1000)), logger: logger)
        }

        func validate() throws {
            guard lockTimeout > 0, lockTimeout <= 3600 else { throw ValidationError("--lock-timeout must be above 0 and at most 3600 seconds") }
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply pending migrations in order (the default; --dry-run lists them).")

        @OptionGroup var common: CommonOptions
        @OptionGroup var source: Source
        @Flag(help: "List pending migrations without applying them.")
        var dryRun = false

        func run() async throws {
            let logger = common.logger()
            let runner = try source.runner(logger: logger)
            let pending = try await withPostgresClient(databaseURL: common.databaseURL, logger: logger) { client in
                try await runner.apply(on: client, dryRun: dryRun)
            }
            if pending.isEmpty {
                print("up to date: \(runner.migrations.count) migration(s) applied")
            }
            for migration in pending {
                print("\(dryRun ? "pending" : "applied") \(migration.label)")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show every migration and whether it is applied.")

        @OptionGroup var common: CommonOptions
        @OptionGroup var source: Source

        func run() async throws {
            let logger = common.logger()
            let runner = try source.runner(logger: logger)
            let entries = try await withPostgresClient(databaseURL: common.databaseURL, logger: logger) { client in
                try await runner.status(on: client)
            }
            for entry in entries {
                let when = entry.appliedAt.map { " at \($0.formatted(.iso8601))" } ?? ""
                print("\(entry.label): \(entry.state.rawValue)\(when)")
            }
        }
    }
}
