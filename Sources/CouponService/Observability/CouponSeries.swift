import Metrics
import Synchronization

/// The series kept per coupon, for the dashboards: the tickets this instance issued of each coupon
/// (`coupon_sale_tickets_issued_total{coupon_id}`) and the tickets each coupon has left
/// (`coupon_sale_remaining_tickets{coupon_id}`, read from the database by `CouponGauges`). The exact
/// total over all coupons stays `coupon_tickets_issued_total`.
///
/// The label set is bounded: a coupon has series while it is open or has issued on this instance within
/// `activeFor`, and never more than `maxCoupons` at once; series of other coupons are removed, so a
/// history of thousands of sales costs nothing. A removed counter starts again from zero if its coupon
/// comes back, which `rate()` reads as a counter reset.
final class CouponSeries: Sendable {
    private struct Series {
        var issued: Metrics.Counter
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
            remaining: Metrics.Gauge(label: "coupon_sale_remaining_tickets", dimensions: label, factory: factory),
            lastIssued: nil)
    }
}
