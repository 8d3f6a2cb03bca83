import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The PostgreSQL server this instance writes to, among the database URL's hosts, and the pool of
/// connections to it: the one unit the stores, the catalogue listener and `migrate` share.
///
/// A `PostgresClient` knows one host, so there is one per host, each run here and opening
/// connections only when used; `client` is the current host's. Twice a second the current host is
/// asked whether it is still what `target_session_attrs` wants (accepts writes, or is not in
/// recovery); when it does not answer in time or answers no, the other hosts are asked in the URL's order
/// and the first that is becomes current, without a restart. Meanwhile requests meet the database
/// deadline (503). A server that turns read-only under a connection answers 25006, which is a 503
/// too, and is left at the next check: no write goes to a standby or to an old primary that came
/// back as one.
final class PrimaryDatabase: Service, Sendable {
    let url: DatabaseURL
    private let clients: [PostgresClient]
    /// Whether `run` runs the pools (not when they were given, already running).
    private let ownsClients: Bool
    private let state: Mutex<State>
    private let logger: Logger
    private let metrics: CouponMetrics?
    /// How often the current host is asked, and how long an answer may take (a host slower than that
    /// is not wanted).
    let checkInterval: Duration = .milliseconds(500)
    let checkTimeout: Duration

    private struct State {
        var current = 0
        var switches = 0
    }

    /// One pool per host of `url`, each configured by `configure`.
    init(
        url: DatabaseURL, logger: Logger, metrics: CouponMetrics? = nil, checkTimeout: Duration = .seconds(1),
        configure: (inout PostgresClient.Configuration) -> Void = { _ in }
    ) {
        self.url = url
        self.checkTimeout = checkTimeout
        self.logger = logger
        self.metrics = metrics
        clients = url.hosts.map { host in
            var configuration = url.on(host).clientConfiguration()
            configure(&configuration)
            return PostgresClient(configuration: configuration, backgroundLogger: logger)
        }
        ownsClients = true
        state = Mutex(State())
    }

    /// A pool that already runs, on `url`'s only host, nothing watched: for tests and tools.
    init(running client: PostgresClient, url: DatabaseURL, logger: Logger) {
        self.url = url
        checkTimeout = .seconds(1)
        self.logger = logger
        metrics = nil
        clients = [client]
        ownsClients = false
        state = Mutex(State())
    }

    /// The pool of the current host.
    var client: PostgresClient { clients[state.withLock { $0.current }] }

    /// The current host, and how many times it changed.
    var status: (host: DatabaseURL.Host, switches: Int) {
        state.withLock { (url.hosts[$0.current], $0.switches) }
    }

    /// The URL of the current host alone, for a dedicated connection (the listener's).
    var currentURL: DatabaseURL { url.on(url.hosts[state.withLock { $0.current }]) }

    func run() async throws {
        await withDiscardingTaskGroup { group in
            if ownsClients {
                for client in clients { group.addTask { await client.run() } }
            }
            // Nothing to watch with one host that only has to answer, or a pool given already running.
            if ownsClients && (clients.count > 1 || url.targetSessionAttrs != .any) {
                group.addTask { await cancelWhenGracefulShutdown { await self.watch() } }
            }
        }
    }

    private func watch() async {
        while !Task.isCancelled {
            let current = state.withLock { $0.current }
            if await !isWanted(current) { await locate(after: current) }
            try? await Task.sleep(for: checkInterval)
        }
    }

    /// The other hosts in the URL's order, each asked once; the first one wanted becomes current.
    /// The lost one, just asked, stays current when none is (it is asked again at the next check).
    private func locate(after lost: Int) async {
        for index in clients.indices where index != lost {
            guard await isWanted(index) else { continue }
            let switches = state.withLock { state in
                state.current = index
                state.switches += 1
                return state.switches
            }
            metrics?.primarySwitches.increment()
            logger.warning(
                "the database host changed", metadata: [
                    "from": "\(url.hosts[lost])", "to": "\(url.hosts[index])", "switches": "\(switches)",
                    "target_session_attrs": "\(url.targetSessionAttrs.rawValue)",
                ])
            return
        }
    }

    /// Whether the host answers within `checkTimeout` and is what `target_session_attrs` wants.
    private func isWanted(_ index: Int) async -> Bool {
        let client = clients[index]
        let question = Self.question(url.targetSessionAttrs)
        return (try? await withDeadline(checkTimeout) {
            for try await wanted in try await client.query(question).decode(Bool.self) { return wanted }
            return false
        }) ?? false
    }

    /// What a host is asked: true when it is what `attrs` wants.
    static func question(_ attrs: DatabaseURL.TargetSessionAttrs) -> PostgresQuery {
        switch attrs {
        case .any: "SELECT true"
        case .readWrite: "SELECT current_setting('transaction_read_only') = 'off'"
        case .primary: "SELECT NOT pg_is_in_recovery()"
        }
    }

    /// The first host of `url` that is what its `target_session_attrs` wants, each asked over a
    /// connection of its own within `timeout`: for commands (`migrate`), which need no watching.
    static func firstWanted(in url: DatabaseURL, timeout: Duration = .seconds(5), logger: Logger) async throws -> DatabaseURL.Host {
        guard url.hosts.count > 1 || url.targetSessionAttrs != .any else { return url.hosts[0] }
        for host in url.hosts {
            let configuration = try url.on(host).connectionConfiguration(applicationName: "coupon-server")
            let wanted = try? await withDeadline(timeout) {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
                defer { Task { try? await connection.close() } }
                for try await wanted in try await connection.query(question(url.targetSessionAttrs), logger: logger).decode(Bool.self) {
                    return wanted
                }
                return false
            }
            if wanted == true { return host }
        }
        throw ConfigurationError(
            "no host of the database URL is \(url.targetSessionAttrs.rawValue): \(url.hosts.map(\.description).joined(separator: ", "))")
    }
}
