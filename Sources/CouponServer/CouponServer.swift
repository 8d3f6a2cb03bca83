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
        subcommands: [Serve.self, Migrate.self],
        defaultSubcommand: Serve.self)
}

let environment = ProcessInfo.processInfo.environment

/// Options every subcommand shares: where the database is and how much to log.
struct CommonOptions: ParsableArguments {
    @Option(help: "postgres://user:password@host:port/database (env: DATABASE_URL).")
    var databaseURL: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical; debug logs every request (env: LOG_LEVEL).")
    var logLevel: String = environment["LOG_LEVEL"] ?? "info"

    @Option(help: "text, or json for one JSON object per line (env: LOG_FORMAT).")
    var logFormat: String = environment["LOG_FORMAT"] ?? "text"

    func resolvedDatabaseURL() throws -> String {
        guard let url = databaseURL ?? environment["DATABASE_URL"], !url.isEmpty else {
            throw ValidationError("set --database-url or DATABASE_URL")
        }
        return url
    }

    func resolvedLogLevel() throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
        return level
    }

    /// Sets the process-wide log format, then returns the command's logger.
    func logger() throws -> Logger {
        let level = try resolvedLogLevel()
        switch logFormat.lowercased() {
        case "text":
            LoggingSystem.bootstrap { label in
                var handler = TextLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        case "json":
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        default:
            throw ValidationError("unknown log format '\(logFormat)': text or json")
        }
        var logger = Logger(label: "coupon-server")
        logger.logLevel = level
        return logger
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the HTTP API.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Address to listen on (env: COUPON_HOST).")
    var host: String = environment["COUPON_HOST"] ?? "127.0.0.1"

    @Option(help: "Port to listen on (env: COUPON_PORT).")
    var port: Int = environment["COUPON_PORT"].flatMap { Int($0) } ?? 8080

    @Option(help: "Bearer token for admin routes; none closes them (env: COUPON_ADMIN_TOKEN).")
    var adminToken: String?

    @Option(help: "Seconds a request waits for the database before it gets 503 (env: COUPON_DB_TIMEOUT).")
    var databaseTimeout: Double = environment["COUPON_DB_TIMEOUT"].flatMap { Double($0) } ?? 3

    @Option(help: "Largest number of pooled database connections (env: COUPON_POOL_SIZE).")
    var poolSize: Int = environment["COUPON_POOL_SIZE"].flatMap { Int($0) } ?? 20

    @Option(help: "Seconds to keep serving after SIGTERM, with /readyz at 503, before the server stops accepting (env: COUPON_SHUTDOWN_DRAIN).")
    var shutdownDrain: Double = environment["COUPON_SHUTDOWN_DRAIN"].flatMap { Double($0) } ?? 2

    @Option(help: "Largest group of requests for one coupon issued in one transaction; 1 turns grouping off (env: COUPON_GROUP_SIZE).")
    var groupSize: Int = environment["COUPON_GROUP_SIZE"].flatMap { Int($0) } ?? 512

    @Option(help: "Where the catalogue listener connects when not --database-url: LISTEN needs a session, not a transaction-mode pooler (env: COUPON_LISTENER_DATABASE_URL).")
    var listenerDatabaseURL: String?

    @Option(help: "Seconds a connection may send nothing, mid-request too, before it is closed (env: COUPON_IDLE_TIMEOUT).")
    var idleTimeout: Double = environment["COUPON_IDLE_TIMEOUT"].flatMap { Double($0) } ?? 10

    func run() async throws {
        let logger = try common.logger()
        let settings = Settings(
            host: host, port: port, databaseURL: try common.resolvedDatabaseURL(),
            adminToken: (adminToken ?? environment["COUPON_ADMIN_TOKEN"]).flatMap { $0.isEmpty ? nil : $0 },
            logLevel: try common.resolvedLogLevel(), databaseTimeout: .milliseconds(Int(databaseTimeout * 1000)),
            maxConnections: poolSize, maxGroupSize: groupSize, idleTimeout: .milliseconds(Int(idleTimeout * 1000)),
            listenerDatabaseURL: (listenerDatabaseURL ?? environment["COUPON_LISTENER_DATABASE_URL"]).flatMap { $0.isEmpty ? nil : $0 })
        let drain = ShutdownDrain(duration: .milliseconds(Int(shutdownDrain * 1000)), logger: logger)
        let app = try buildApplication(settings, drain: drain)
        // The drain comes after the application, so SIGTERM reaches it first.
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: app), .init(service: drain)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    func validate() throws {
        guard (1...65535).contains(port) || port == 0 else { throw ValidationError("--port must be 0 to 65535") }
        guard databaseTimeout > 0 else { throw ValidationError("--database-timeout must be positive") }
        guard poolSize > 0 else { throw ValidationError("--pool-size must be positive") }
        guard shutdownDrain >= 0 else { throw ValidationError("--shutdown-drain must not be negative") }
        guard (1...10_000).contains(groupSize) else { throw ValidationError("--group-size must be 1 to 10000") }
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
    }
}

struct Settings: AppArguments {
    var host: String
    var port: Int
    var databaseURL: String
    var adminToken: String?
    var logLevel: Logger.Level
    var databaseTimeout: Duration
    var maxConnections: Int
    var maxGroupSize: Int
    var idleTimeout: Duration
    var listenerDatabaseURL: String?
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the SQL migrations, or show their state.",
        subcommands: [Apply.self, Status.self],
        defaultSubcommand: Apply.self)

    struct Source: ParsableArguments {
        @Option(help: "Folder of NNNN_name.sql files (env: COUPON_MIGRATIONS).")
        var migrations: String = environment["COUPON_MIGRATIONS"] ?? "migrations"

        func runner(logger: Logger) throws -> MigrationRunner {
            MigrationRunner(
                migrations: try Migration.load(from: URL(filePath: migrations, directoryHint: .isDirectory)), logger: logger)
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply pending migrations in order (the default).")

        @OptionGroup var common: CommonOptions
        @OptionGroup var source: Source
        @Flag(help: "List pending migrations without applying them.")
        var dryRun = false

        func run() async throws {
            let logger = try common.logger()
            let runner = try source.runner(logger: logger)
            let pending = try await withPostgresClient(databaseURL: common.resolvedDatabaseURL(), logger: logger) { client in
                try await runner.apply(on: client, dryRun: dryRun)
            }
            if pending.isEmpty {
                print("up to date: \(runner.migrations.count) migration(s) applied")
            }
            for migration in pending {
                print("\(dryRun ? "pending" : "applied") \(String(format: "%04d", migration.version)) \(migration.name)")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show every migration and whether it is applied.")

        @OptionGroup var common: CommonOptions
        @OptionGroup var source: Source

        func run() async throws {
            let logger = try common.logger()
            let runner = try source.runner(logger: logger)
            let entries = try await withPostgresClient(databaseURL: common.resolvedDatabaseURL(), logger: logger) { client in
                try await runner.status(on: client)
            }
            for entry in entries {
                let when = entry.appliedAt.map { " at \($0.formatted(.iso8601))" } ?? ""
                print("\(String(format: "%04d", entry.version)) \(entry.name): \(entry.state.rawValue)\(when)")
            }
        }
    }
}
