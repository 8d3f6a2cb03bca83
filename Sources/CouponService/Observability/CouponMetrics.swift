import Metrics
import Prometheus
import Synchronization

/// What an operator watches during a sale, through swift-metrics into the application's own
/// Prometheus registry (served at `GET /metrics`). Metrics made here never touch the global
/// `MetricsSystem`, so each application, and each test, counts on its own.
struct CouponMetrics: Sendable {
    /// Where an issue request's answer came from: memory, one read of the user's ticket (a likely
    /// holder of a final coupon), or issuance.
    enum Source: String, CaseIterable { case cache, lookup, database }

    let registry: PrometheusCollectorRegistry
    /// Tickets this instance's transactions committed, counted at COMMIT: a ticket whose request had
    /// already been answered 503 at the deadline is counted too.
    let ticketsIssued: Metrics.Counter
    /// Requests of users who already held a ticket, answered 200 with it.
    let repeats: Metrics.Counter
    /// Requests answered without a new ticket, by reason.
    /// Keyed by the `reason` label: a refusal's outcome name, or `unavailable` (503).
    let refusals: [String: Metrics.Counter]
    /// Issue requests answered from the in-memory catalogue or by the database.
    let answers: [Source: Metrics.Counter]
    let issueDuration: [Source: Metrics.Timer]
    /// Users per issuance transaction (a sale's groups, and the batches of an admin's grant), and the
    /// wait for its connection: both recorded by `IssuanceStore`, which runs every one.
    let groupSize: Metrics.Recorder
    let poolWait: Metrics.Timer
    let listenerConnected: Metrics.Gauge
    /// Times the catalogue's listener connected and reloaded every coupon (1 at start, then one per
    /// reconnect: a count that climbs is a listener that keeps losing its connection).
    let listenerConnects: Metrics.Counter
    /// Tickets redeemed at checkout, redemptions restored (orders cancelled), tickets returned to the pool.
    let redemptions: Metrics.Counter
    let restores: Metrics.Counter
    let returns: Metrics.Counter
    /// Tickets held for an order at checkout, holds confirmed (also counted as redemptions), and holds
    /// lapsed, each lapse counted once, by the request that first meets it (there is no sweeper).
    let holdsPlaced: Metrics.Counter
    let holdsConfirmed: Metrics.Counter
    let holdsLapsed: Metrics.Counter
    /// Holders of final coupons kept in memory (8 bytes each).
    let holderHashes: Metrics.Gauge
    /// The database's clock minus this instance's, as last measured.
    let clockOffset: Metrics.Gauge
    /// 1 while the database answered this instance's last poll (every 2 s), else 0.
    let databaseReachable: Metrics.Gauge
    /// Times the database host written to changed (a failover found by `PrimaryDatabase`).
    let primarySwitches: Metrics.Counter
    /// Per coupon, for coupons open or active in the last hour.
    let sales: CouponSeries
    /// The event feed's settled position, as this instance last read it: its rate is events written.
    let feedPosition: Metrics.Gauge
    /// Webhook deliveries (batches) by outcome.
    let webhookDeliveries: [WebhookDelivery.Outcome: Metrics.Counter]
    /// Endpoints failing or given up, as this instance last read them.
    let webhooksFailing: Metrics.Gauge
    private let factory: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        var factory = PrometheusMetricsFactory(registry: registry)
        let fine: [Duration] = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .milliseconds(2500), .seconds(5),
        ]
        factory.durationHistogramBuckets = ["coupon_issue_duration_seconds": fine, "coupon_pool_wait_seconds": fine]
        factory.valueHistogramBuckets = ["coupon_issue_group_size": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]]
        self.registry = registry
        ticketsIssued = Metrics.Counter(label: "coupon_tickets_issued_total", factory: factory)
        repeats = Metrics.Counter(label: "coupon_issue_repeats_total", factory: factory)
        refusals = Dictionary(uniqueKeysWithValues: Self.refusalReasons.map { reason in
            (reason, Metrics.Counter(label: "coupon_requests_refused_total", dimensions: [("reason", reason)], factory: factory))
        })
        answers = Dictionary(uniqueKeysWithValues: Source.allCases.map { source in
            (source, Metrics.Counter(label: "coupon_issue_answers_total", dimensions: [("source", source.rawValue)], factory: factory))
        })
        issueDuration = Dictionary(uniqueKeysWithValues: Source.allCases.map { source in
            (source, Metrics.Timer(label: "coupon_issue_duration_seconds", dimensions: [("source", source.rawValue)], factory: factory))
        })
        groupSize = Metrics.Recorder(label: "coupon_issue_group_size", factory: factory)
        poolWait = Metrics.Timer(label: "coupon_pool_wait_seconds", factory: factory)
        listenerConnected = Metrics.Gauge(label: "coupon_listener_connected", factory: factory)
        listenerConnects = Metrics.Counter(label: "coupon_listener_connects_total", factory: factory)
        redemptions = Metrics.Counter(label: "coupon_redemptions_total", factory: factory)
        restores = Metrics.Counter(label: "coupon_restores_total", factory: factory)
        returns = Metrics.Counter(label: "coupon_returns_total", factory: factory)
        holdsPlaced = Metrics.Counter(label: "coupon_holds_placed_total", factory: factory)
        holdsConfirmed = Metrics.Counter(label: "coupon_holds_confirmed_total", factory: factory)
        holdsLapsed = Metrics.Counter(label: "coupon_holds_lapsed_total", factory: factory)
        holderHashes = Metrics.Gauge(label: "coupon_catalogue_holder_hashes", factory: factory)
        clockOffset = Metrics.Gauge(label: "coupon_database_clock_offset_seconds", factory: factory)
        databaseReachable = Metrics.Gauge(label: "coupon_database_reachable", factory: factory)
        primarySwitches = Metrics.Counter(label: "coupon_database_primary_switches_total", factory: factory)
        sales = CouponSeries(factory: factory)
        feedPosition = Metrics.Gauge(label: "coupon_event_feed_position", factory: factory)
        webhookDeliveries = Dictionary(uniqueKeysWithValues: WebhookDelivery.Outcome.allCases.map { outcome in
            (outcome, Metrics.Counter(label: "coupon_webhook_deliveries_total", dimensions: [("outcome", outcome.rawValue)], factory: factory))
        })
        webhooksFailing = Metrics.Gauge(label: "coupon_webhooks_failing", factory: factory)
        self.factory = factory
    }

    /// The standbys confirming the primary's commits, as last read: made at the first read, so an
    /// instance whose URL asks for no writer (no replication watched) has no such series.
    func synchronousStandbys() -> Metrics.Gauge {
        Metrics.Gauge(label: "coupon_database_synchronous_standbys", factory: factory)
    }

    /// The age of the oldest event an endpoint has not acknowledged, on the instance delivering to it
    /// (0 elsewhere and when it has them all).
    func webhookLag(_ id: Int64) -> Metrics.Gauge {
        Metrics.Gauge(label: "coupon_webhook_lag_seconds", dimensions: [("webhook_id", String(id))], factory: factory)
    }

    /// One issue request answered.
    func record(_ result: Result<TicketAnswer, any Error>, couponID: Int64, from source: Source, after duration: Duration) {
        answers[source]?.increment()
        issueDuration[source]?.recordNanoseconds(duration.nanoseconds)
        switch result.map(\.outcome) {
        case .success(.notStarted), .success(.ended), .success(.couponNotFound): break
        default: sales.requested(couponID: couponID)
        }
        switch result.map(\.outcome) {
        case .success(.issued): break  // counted at COMMIT (`ticketsIssued`)
        case .success(.alreadyIssued): repeats.increment()
        case .success(let refusal): refusals[refusal.rawValue]?.increment()
        case .failure: refusals[Self.unavailable]?.increment()
        }
    }

    /// The database failed or missed its deadline (503).
    static let unavailable = CouponProblem.Code.unavailable.rawValue
    /// Why an issue request got no ticket (the `reason` label).
    static let refusalReasons = TicketOutcome.ofIssuance.filter(\.isRefusal).map(\.rawValue) + [unavailable]
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// The series kept per coupon, for the dashboards and the sale's alerts: the tickets this instance
/// issued of each coupon (`coupon_sale_tickets_issued_total{coupon_id}`), the issue requests it took
/// while the coupon's window was open (`coupon_sale_requests_total{coupon_id}`), and the tickets each
/// coupon has left (`coupon_sale_remaining_tickets{coupon_id}`, read from the database by
/// `CouponGauges`). The exact total over all coupons stays `coupon_tickets_issued_total`.
///
/// The label set is bounded: a coupon has series while it is open or has issued on this instance within
/// `activeFor`, and never more than `maxCoupons` at once; series of other coupons are removed, so a
/// history of thousands of sales costs nothing. A removed counter starts again from zero if its coupon
/// comes back, which `rate()` reads as a counter reset.
final class CouponSeries: Sendable {
    private struct Series {
        var issued: Metrics.Counter
        var requests: Metrics.Counter
        var remaining: Metrics.Gauge
        var lastIssued: ContinuousClock.Instant?
    }

    private let series = Mutex<[Int64: Series]>([:])
    private let factory: any MetricsFactory
    let activeFor: Duration
    let maxCoupons: Int

    init(factory: any MetricsFactory, activeFor: Duration = .seconds(3600), maxCoupons: Int = 1_000) {
        self.factory = factory
        self.activeFor = activeFor
        self.maxCoupons = maxCoupons
    }

    /// A transaction of this instance committed `count` tickets of the coupon.
    func issued(_ count: Int, couponID: Int64, at now: ContinuousClock.Instant = .now) {
        guard count > 0 else { return }
        let counter: Metrics.Counter? = series.withLock { series in
            if series[couponID] == nil {
                guard series.count < maxCoupons else { return nil }
                series[couponID] = makeSeries(couponID)
            }
            series[couponID]?.lastIssued = now
            return series[couponID]?.issued
        }
        counter?.increment(by: count)
    }

    /// An issue request for the coupon within its window (not refused as not started or ended): counted
    /// while the coupon has series (open, or issuing here), so requests that issue nothing show.
    func requested(couponID: Int64) {
        series.withLock { $0[couponID]?.requests }?.increment()
    }

    /// The coupons whose remaining tickets are wanted: those that issued here within `activeFor`, then
    /// `open` ones, at most `maxCoupons` in all.
    func coupons(open: [Int64], at now: ContinuousClock.Instant = .now) -> [Int64] {
        let recent = series.withLock { series in series.compactMap { id, s in isActive(s, at: now) ? id : nil } }
        var wanted = Set(recent)
        for id in open where wanted.count < maxCoupons { wanted.insert(id) }
        return Array(wanted)
    }

    /// The remaining tickets of the coupons `coupons(open:)` named, as just read. The series of every
    /// other coupon are removed, unless it issued here within `activeFor` (also while the read ran).
    func update(remaining: [Int64: Int], at now: ContinuousClock.Instant = .now) {
        let (removed, gauges): ([Series], [(Metrics.Gauge, Int)]) = series.withLock { series in
            var removed: [Series] = []
            for (id, s) in series where remaining[id] == nil && !isActive(s, at: now) {
                removed.append(s)
                series[id] = nil
            }
            for (id, _) in remaining where series[id] == nil && series.count < maxCoupons {
                series[id] = makeSeries(id)
            }
            return (removed, remaining.compactMap { id, left in series[id].map { ($0.remaining, left) } })
        }
        for old in removed {
            old.issued.destroy()
            old.requests.destroy()
            old.remaining.destroy()
        }
        for (gauge, left) in gauges { gauge.record(left) }
    }

    private func isActive(_ series: Series, at now: ContinuousClock.Instant) -> Bool {
        series.lastIssued.map { now - $0 < activeFor } ?? false
    }

    /// Coupons with series now.
    var count: Int { series.withLock { $0.count } }

    private func makeSeries(_ couponID: Int64) -> Series {
        let label = [("coupon_id", String(couponID))]
        return Series(
            issued: Metrics.Counter(label: "coupon_sale_tickets_issued_total", dimensions: label, factory: factory),
            requests: Metrics.Counter(label: "coupon_sale_requests_total", dimensions: label, factory: factory),
            remaining: Metrics.Gauge(label: "coupon_sale_remaining_tickets", dimensions: label, factory: factory),
            lastIssued: nil)
    }
}
