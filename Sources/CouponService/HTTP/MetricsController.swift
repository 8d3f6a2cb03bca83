import Hummingbird

/// `GET /metrics`: everything `CouponMetrics` recorded, in Prometheus' text format.
struct MetricsController<Context: RequestContext>: Sendable {
    let metrics: CouponMetrics

    func addRoutes(to router: Router<Context>) {
        router.route("/metrics") {
            $0.on(.get) { _, _ in
                Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: metrics.registry.emitToBuffer())))
            }
        }
    }
}
