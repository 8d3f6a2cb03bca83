@testable import CouponService
import Prometheus
import Testing

/// The per-coupon series stay bounded: coupons on sale or issuing within the hour, at most `maxCoupons`.
@Suite struct CouponSeriesTests {
    func exposition(_ registry: PrometheusCollectorRegistry) -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    @Test func onlyActiveCouponsKeepTheirSeries() {
        let registry = PrometheusCollectorRegistry()
        let series = CouponSeries(factory: PrometheusMetricsFactory(registry: registry), activeFor: .seconds(3600), maxCoupons: 3)
        let start = ContinuousClock.now
        series.issued(5, couponID: 1, at: start)
        series.issued(2, couponID: 2, at: start + .seconds(3000))
        #expect(exposition(registry).contains(#"coupon_sale_tickets_issued_total{coupon_id="1"} 5"#))

        // An hour after coupon 1's last ticket, only coupon 2 (issuing) and the open coupon 7 are wanted.
        let later = start + .seconds(3700)
        #expect(Set(series.coupons(open: [7], at: later)) == [2, 7])
        // Coupon 3 issues while the read runs: not in its answer, but active, so it keeps its series.
        series.issued(4, couponID: 3, at: later)
        series.update(remaining: [2: 10, 7: 50], at: later)
        let text = exposition(registry)
        #expect(!text.contains(#"coupon_id="1""#), "coupon 1's series are gone")
        #expect(text.contains(#"coupon_sale_remaining_tickets{coupon_id="7"} 50"#))
        #expect(text.contains(#"coupon_sale_tickets_issued_total{coupon_id="2"} 2"#))
        #expect(text.contains(#"coupon_sale_tickets_issued_total{coupon_id="3"} 4"#))
        #expect(series.count == 3)
    }

    @Test func neverMoreThanTheCap() {
        let registry = PrometheusCollectorRegistry()
        let series = CouponSeries(factory: PrometheusMetricsFactory(registry: registry), maxCoupons: 3)
        for coupon in 1...10 { series.issued(1, couponID: Int64(coupon)) }
        #expect(series.count == 3)
        #expect(series.coupons(open: Array(20...30)).count == 3)
        series.update(remaining: Dictionary(uniqueKeysWithValues: (1...10).map { (Int64($0), 1) }))
        #expect(series.count == 3)
        #expect(exposition(registry).components(separatedBy: "coupon_sale_remaining_tickets{").count - 1 == 3)
    }
}
