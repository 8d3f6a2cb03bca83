import Logging
import ServiceLifecycle

/// Every `interval`, reads the tickets left of the coupons on sale (open, or issued here within the
/// hour) into `coupon_sale_remaining_tickets`, and whether the database answered into
/// `coupon_database_reachable`. One indexed read of at most 1,000 coupon rows per instance; with a
/// URL that asks for a writer, also the primary's synchronous standbys
/// (`coupon_database_synchronous_standbys`, from `pg_stat_replication`).
struct CouponGauges: Service {
    let coupons: CouponStore
    let catalogue: CouponCatalogue
    let metrics: CouponMetrics
    let logger: Logger
    var interval: Duration = .seconds(2)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await poll()
                try? await Task.sleep(for: interval)
            }
        }
    }

    func poll() async {
        let sales = metrics.sales
        let wanted = sales.coupons(open: catalogue.openCouponIDs(limit: sales.maxCoupons))
        do {
            let remaining = try await coupons.remaining(ids: wanted)
            sales.update(remaining: remaining)
            metrics.databaseReachable.record(1)
            if let standbys = try await coupons.database.synchronousStandbys() {
                metrics.synchronousStandbys().record(standbys)
            }
        } catch {
            guard !Task.isCancelled else { return }
            metrics.databaseReachable.record(0)
            logger.debug("could not read the remaining tickets", metadata: ["error": "\(DatabaseFailure.logged(error))"])
        }
    }
}
