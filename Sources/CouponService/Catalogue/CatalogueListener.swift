import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// Keeps the `CouponCatalogue` current from `LISTEN coupon_events` (migrations/functions/notify_coupon_event.sql), its clock
/// in step with the database's, and loads the holders of final coupons that requests ask about.
///
/// LISTEN needs a session of its own, so the listener owns one connection outside the pool (a
/// transaction-mode PgBouncer would break it). Notifications sent while it is disconnected are lost,
/// so after every (re)connect it listens first and then reloads every coupon; until that reload is
/// done the catalogue is not trusted and requests go to the database. Holders are read from the pool,
/// beside the listener's connection, so a coupon of a million holders never delays a notification.
///
/// On a Citus cluster the coupons' triggers fire on the workers that hold their shards, so the
/// listener also listens on every worker the coordinator names (`pg_dist_node`), with the same user,
/// database and TLS settings. The connections are one unit: when any of them fails, the catalogue is
/// distrusted, all are opened again, and the catalogue is reloaded, as with one.
struct CatalogueListener: Service {
    static let channel = "coupon_events"
    static let applicationName = "coupon-listener"

    /// Where it connects: the current host of `primary`, unless a URL of its own is given (LISTEN needs
    /// a session, so behind a transaction-mode pooler it must reach PostgreSQL directly).
    let primary: PrimaryDatabase
    let ownURL: DatabaseURL?
    let catalogue: CouponCatalogue
    /// Woken by `NOTIFY outbox` (`EventBell`), and at every (re)connect, when notifications may have been lost.
    let bell: EventBell
    /// For holder reads.
    var client: PostgresClient { primary.client }
    let store: CatalogueStore
    let logger: Logger
    let metrics: CouponMetrics
    /// Reconnect backoff starts here and doubles up to `maxBackoff`.
    let minBackoff: Duration = .milliseconds(50)
    let maxBackoff: Duration = .seconds(1)
    /// How often the database's clock is read again.
    let clockInterval: Duration = .seconds(2)
    /// How often wanted holders are looked for.
    let holdersInterval: Duration = .milliseconds(20)

    init(
        primary: PrimaryDatabase, ownURL: DatabaseURL? = nil, catalogue: CouponCatalogue, bell: EventBell = EventBell(), logger: Logger,
        metrics: CouponMetrics
    ) throws {
        self.primary = primary
        self.ownURL = ownURL
        // A TLS setting that cannot be made stops the start, not the first connection.
        _ = try (ownURL ?? primary.url).connectionConfiguration(applicationName: Self.applicationName)
        self.catalogue = catalogue
        self.bell = bell
        self.store = CatalogueStore(logger: logger)
        self.logger = logger
        self.metrics = metrics
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var backoff = minBackoff
            while !Task.isCancelled {
                do {
                    try await listenUntilDisconnected { backoff = minBackoff }
                } catch {
                    guard !Task.isCancelled else { break }
                    // Loud once per outage, quiet while retrying.
                    let level: Logger.Level = catalogue.listenerState == .connected ? .warning : .debug
                    logger.log(
                        level: level, "catalogue listener disconnected; requests go to the database until it is back",
                        metadata: ["error": "\(DatabaseFailure.logged(error))", "retry_in": "\(backoff)"])
                }
                catalogue.distrust(.reconnecting)
                metrics.listenerConnected.record(0)
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, maxBackoff)
            }
            catalogue.distrust(.stopped)
            metrics.listenerConnected.record(0)
            logger.info("catalogue listener stopped")
        }
    }

    private func listenUntilDisconnected(onTrusted: () -> Void) async throws {
        let databaseURL = ownURL ?? primary.currentURL
        let connection = try await PostgresConnection.connect(
            configuration: try databaseURL.connectionConfiguration(applicationName: Self.applicationName), id: 0, logger: logger)
        var workers: [PostgresConnection] = []
        defer {
            for worker in workers { Task { try? await worker.close() } }
        }
        do {
            for (index, node) in try await store.workers(on: connection).enumerated() {
                let url = databaseURL.on(host: node.host, port: node.port)
                workers.append(try await PostgresConnection.connect(
                    configuration: try url.connectionConfiguration(applicationName: Self.applicationName), id: index + 1,
                    logger: logger))
            }
            var streams = [try await connection.listen(Self.channel)]
            for worker in workers { streams.append(try await worker.listen(Self.channel)) }
            let outbox = try await connection.listen(EventBell.channel)
            try await measureClock(on: connection, attempts: 5)
            try await reloadAll(on: connection, nodes: 1 + workers.count)
            metrics.listenerConnected.record(1)
            metrics.listenerConnects.increment()
            onTrusted()
            bell.wake()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await _ in outbox { bell.wake() }
                    throw ListenerError.notificationsEnded
                }
                for notifications in streams {
                    group.addTask {
                        for try await notification in notifications {
                            guard let id = Int64(notification.payload) else { continue }
                            catalogue.update(couponID: id, with: try await store.coupon(id: id, on: connection))
                            metrics.holderHashes.record(catalogue.holderHashCount)
                        }
                        throw ListenerError.notificationsEnded
                    }
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: clockInterval)
                        try await measureClock(on: connection, attempts: 1)
                    }
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: holdersInterval)
                        await loadWantedHolders()
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    /// Reads every coupon in one snapshot. Holders are not read: those of coupons whose row did not
    /// change are kept, the rest are loaded when someone asks.
    func reloadAll(on connection: PostgresConnection, nodes: Int = 1) async throws {
        let entries = try await store.coupons(on: connection)
        catalogue.replaceAll(with: entries)
        metrics.holderHashes.record(catalogue.holderHashCount)
        logger.info(
            "catalogue listener connected: sold-out and window answers come from memory",
            metadata: [
                "coupons": "\(entries.count)", "holders_kept": "\(catalogue.holderHashCount)", "nodes_listened": "\(nodes)",
                "clock_offset_seconds": "\(catalogue.clock.offset.map { "\($0)" } ?? "unknown")",
            ])
    }

    /// Tries up to `attempts` times for a measurement with a short round trip.
    private func measureClock(on connection: PostgresConnection, attempts: Int) async throws {
        for _ in 0..<attempts {
            if try await catalogue.clock.measure({ try await store.databaseTime(on: connection) }) { break }
        }
        if let offset = catalogue.clock.offset { metrics.clockOffset.record(offset) }
    }

    /// Loads, one coupon after another, the holders requests asked for. A failure is logged and left
    /// for the next request to ask again: meanwhile those requests read the user's ticket instead.
    private func loadWantedHolders() async {
        for (id, generation) in catalogue.takeHoldersWanted() {
            do {
                let entry = try await client.withConnection { try await store.finalEntry(id: id, on: $0) }
                if let entry {
                    catalogue.install(couponID: id, loaded: entry, ifStillAt: generation)
                } else {
                    catalogue.update(couponID: id, with: nil)
                }
                metrics.holderHashes.record(catalogue.holderHashCount)
            } catch {
                catalogue.holdersNotLoaded(couponID: id)
                guard !Task.isCancelled else { return }
                logger.warning(
                    "could not load a coupon's holders; its holder checks read the database meanwhile",
                    metadata: ["coupon_id": "\(id)", "error": "\(DatabaseFailure.logged(error))"])
            }
        }
    }
}

enum ListenerError: Error {
    case notificationsEnded
}
