import Hummingbird

/// `/healthz`: the process answers. `/readyz`: the database answers too; its detail (the database's
/// host, the listener, the clock) only where the operator reads it, never to a stranger.
struct HealthController<Context: RequestContext>: Sendable {
    let database: Database
    let catalogue: CouponCatalogue
    let drain: ShutdownDrain?
    let detail: Detail

    /// Who is told more than ready or not.
    enum Detail: Sendable {
        /// Everyone: the metrics port, which only the operator's network reaches.
        case always
        /// A caller with the admin token (the public port when there is no metrics port).
        case forAdmin(AdminGuard)
        /// No one (the public port beside a metrics port).
        case never

        func allows(_ request: Request) -> Bool {
            switch self {
            case .always: true
            case .forAdmin(let admin): (try? admin.check(request)) != nil
            case .never: false
            }
        }
    }

    struct Health: ResponseEncodable {
        var status: String
        var database: String?
        /// `connected` when rejects are answered from memory; otherwise they go to the database.
        var listener: String?
        /// The database's clock minus this instance's, in seconds, as the catalogue last measured it.
        var clock_offset_seconds: Double?
        /// The host written to (`host:port`), and how many times it changed since the start.
        var primary: String?
        var primary_switches: Int?
    }

    func addRoutes(to router: Router<Context>) {
        router.route("/healthz") { $0.on(.get) { _, _ in Health(status: "ok") } }
        router.route("/readyz") { $0.on(.get, use: ready) }
    }

    @Sendable func ready(_ request: Request, context: Context) async throws -> EditedResponse<Health> {
        let listener = catalogue.listenerState.rawValue
        let offset = catalogue.clock.offset
        let detailed = detail.allows(request)
        func health(_ status: String, _ reachable: String?) -> Health {
            guard detailed else { return Health(status: status) }
            // Read as the answer leaves: the ping may have waited through a switch of host.
            let primary = database.primary.status
            return Health(
                status: status, database: reachable, listener: listener, clock_offset_seconds: offset,
                primary: "\(primary.host)", primary_switches: primary.switches)
        }
        if drain?.isDraining == true {
            return EditedResponse(
                status: .serviceUnavailable, headers: [.retryAfter: "1"],
                response: health("draining", nil))
        }
        do {
            try await database.ping()
            return EditedResponse(status: .ok, response: health("ready", "up"))
        } catch {
            var headers: HTTPFields = [:]
            headers[.retryAfter] = "1"
            return EditedResponse(
                status: .serviceUnavailable, headers: headers,
                response: health("unavailable", "down"))
        }
    }
}
