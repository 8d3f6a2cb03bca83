import Hummingbird

/// `/healthz`: the process answers. `/readyz`: the database answers too.
struct HealthController<Context: RequestContext>: Sendable {
    let database: DatabaseGate

    struct Health: ResponseEncodable {
        var status: String
        var database: String?
    }

    func addRoutes(to router: Router<Context>) {
        router.get("/healthz") { _, _ in Health(status: "ok") }
        router.get("/readyz") { _, _ in
            do {
                try await database.ping()
                return Health(status: "ready", database: "up")
            } catch {
                throw CouponProblem.unavailable
            }
        }
    }
}
