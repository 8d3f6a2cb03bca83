import Hummingbird
import HummingbirdCore
import Logging
import PostgresNIO
import ServiceLifecycle

/// The settings the service runs with; the command line and the tests each provide them.
public protocol AppArguments: Sendable {
    var host: String { get }
    var port: Int { get }
    var databaseURL: String { get }
    /// The admin routes' bearer token (at least 32 bytes; a file may hold two); nil closes them.
    var adminToken: TokenSource? { get throws }
    /// The checkout's bearer token (at least 32 bytes; a file may hold two): with JWT identity on, it
    /// may read, redeem and restore any user's ticket.
    var checkoutToken: TokenSource? { get throws }
    /// The events' reader's bearer token (at least 32 bytes; a file may hold two): it may read
    /// `GET /v1/events`, as the admin may.
    var eventsToken: TokenSource? { get throws }
    /// Webhook delivery and the outbox's retention.
    var events: EventSettings { get }
    /// JWT identity: the JWKS (a file, or the provider's URL) of the keys that sign users' tokens, the
    /// `iss` and `aud` they must name, and the claim naming the user. Without one the user routes
    /// trust the body and path.
    var authJWKS: JWKSSource? { get }
    var authIssuer: String? { get }
    var authAudience: String? { get }
    var authUserClaim: String { get }
    /// The longest a user's token may still be valid for (`exp` past now plus this is refused).
    var authMaxTokenLifetime: Duration { get }
    var logLevel: Logger.Level { get }
    /// How long a request waits for the database before it gets 503.
    var databaseTimeout: Duration { get }
    /// Largest number of pooled database connections.
    var poolSize: Int { get }
    /// Largest group of requests issued in one transaction; 1 issues each request on its own.
    var groupSize: Int { get }
    /// A connection that sends nothing for this long (mid-request too) is closed.
    var idleTimeout: Duration { get }
    /// A request's body must arrive whole within this long of its head, else 408 and the connection closes.
    var requestTimeout: Duration { get }
    /// Most connections open at once; past it, new ones wait in the accept queue.
    var maxConnections: Int { get }
    /// When given, `/metrics` is served on this port alone, not on the public one.
    var metricsPort: Int? { get }
    /// Where the catalogue listener connects, when not `databaseURL`: LISTEN needs a session, so
    /// behind a transaction-mode pooler it must reach PostgreSQL directly.
    var listenerDatabaseURL: String? { get }
}

/// This build's version (`coupon-server --version`).
public let couponServiceVersion = "0.20.0"

/// Builds the whole service: database pool, catalogue listener, stores, issuer, routes. The one place it is put together.
///
/// `drain`, when given, turns `/readyz` to 503 while it drains (see `ShutdownDrain`).
public func buildApplication(_ arguments: some AppArguments, drain: ShutdownDrain? = nil) async throws -> some ApplicationProtocol {
    var logger = Logger(label: "coupon-server")
    logger.logLevel = arguments.logLevel

    let databaseURL = try DatabaseURL(arguments.databaseURL)
    let metrics = CouponMetrics()
    let primary = PrimaryDatabase(url: databaseURL, logger: logger, metrics: metrics) { configuration in
        configuration.options.maximumConnections = arguments.poolSize
        configuration.options.connectTimeout = arguments.databaseTimeout
    }
    logger.info(
        "database", metadata: [
            "hosts": "\(databaseURL.hosts)", "target_session_attrs": "\(databaseURL.targetSessionAttrs.rawValue)",
            "database": "\(databaseURL.database ?? databaseURL.username)",
            "user": "\(databaseURL.username)", "sslmode": "\(databaseURL.sslMode.rawValue)", "pool_size": "\(arguments.poolSize)", "group_size": "\(arguments.groupSize)",
        ])

    let adminToken = try arguments.adminToken.map { try ServiceTokens($0, name: "admin token", logger: logger) }
    if adminToken == nil {
        logger.warning("no admin token configured (COUPON_ADMIN_TOKEN or --admin-token-file): admin routes answer 403")
    }
    let checkout = try arguments.checkoutToken.map { try ServiceTokens($0, name: "checkout token", logger: logger) }
    let tokens = try await buildTokenVerifier(arguments, checkout: checkout != nil, logger: logger)
    let admin = AdminGuard(token: adminToken)
    let access = UserAccess(tokens: tokens, checkout: checkout)
    // A quarter of the pool for admin writes at most: the rest stays the sale's.
    let adminWrites = AdminWriteSlots(limit: max(1, arguments.poolSize / 4))
    let database = Database(
        primary: primary, logger: logger, timeout: arguments.databaseTimeout, adminWriteTimeout: .seconds(300), adminWrites: adminWrites)
    let catalogue = CouponCatalogue()
    let listenerURL = try arguments.listenerDatabaseURL.map(DatabaseURL.init)
    let listener = try CatalogueListener(
        primary: primary, ownURL: listenerURL, catalogue: catalogue, bell: database.bell, logger: logger, metrics: metrics)
    let feed = EventFeed(database: database, metrics: metrics)
    let outbox = Outbox(database: database)
    let webhooks = WebhookStore(database: database)
    let coupons = CouponStore(database: database)
    let tickets = TicketStore(database: database, metrics: metrics)
    let issuance = IssuanceStore(database: database, metrics: metrics)
    let queue = IssuanceQueue(
        database: issuance, maxGroupSize: arguments.groupSize, timeout: arguments.databaseTimeout, clock: ContinuousClock())
    let issuer = TicketIssuer(
        catalogue: catalogue, queue: queue, coupons: coupons, store: issuance, tickets: tickets, metrics: metrics)
    let gauges = CouponGauges(coupons: coupons, catalogue: catalogue, metrics: metrics, logger: logger)

    let router = buildRouter()
    HealthController(
        database: database, catalogue: catalogue, drain: drain, detail: arguments.metricsPort == nil ? .forAdmin(admin) : .never
    ).addRoutes(to: router)
    CouponController(coupons: coupons, issuer: issuer, catalogue: catalogue, admin: admin, access: access).addRoutes(to: router)
    TicketController(tickets: tickets, admin: admin, access: access).addRoutes(to: router)
    let reader = try arguments.eventsToken.map { try ServiceTokens($0, name: "events token", logger: logger) }
    EventController(feed: feed, outbox: outbox, webhooks: webhooks, admin: admin, reader: reader).addRoutes(to: router)

    var services: [any Service] = [primary, listener, gauges]
    services.append(WebhookDelivery(webhooks: webhooks, outbox: outbox, feed: feed, settings: arguments.events, metrics: metrics, logger: logger))
    services.append(OutboxRetention(outbox: outbox, feed: feed, settings: arguments.events, logger: logger))
    if let tokens { services.append(tokens) }
    // Token files are re-read every second (a rotation needs no restart).
    services += [adminToken, checkout, reader].compactMap { $0 } as [any Service]
    if let metricsPort = arguments.metricsPort {
        // Its own listener, so the public port does not list open coupons and their remaining tickets,
        // nor the database's host (/readyz in detail).
        let metricsRouter = buildRouter()
        MetricsController(metrics: metrics).addRoutes(to: metricsRouter)
        HealthController(database: database, catalogue: catalogue, drain: drain, detail: .always).addRoutes(to: metricsRouter)
        let address = BindAddress.hostname(arguments.host, port: metricsPort)
        services.append(Application(router: metricsRouter, configuration: .init(address: address, serverName: "coupon-server"), logger: logger))
    } else {
        MetricsController(metrics: metrics).addRoutes(to: router)
    }
    let requestTimeout = arguments.requestTimeout
    let connections = OpenConnections()
    return Application(
        router: router,
        server: .http1(
            configuration: .init(
                additionalChannelHandlers: [RequestDeadlineHandler(timeout: requestTimeout), OpenConnections.Tracker(connections)],
                idleTimeout: TimeAmount(arguments.idleTimeout))),
        // A sale opens with thousands of connections in the same second. Those the accept queue has no
        // room for are dropped and retried by the client 1, 3, 7, 15... seconds later (10,000 at once:
        // the last answered after 15-42 s with Hummingbird's 256). The kernel caps it at
        // net.core.somaxconn (4096 by default).
        configuration: .init(
            address: .hostname(arguments.host, port: arguments.port), serverName: "coupon-server", backlog: 4096,
            availableConnectionsDelegate: ConnectionCap(arguments.maxConnections, connections: connections)),
        services: services,
        logger: logger)
}

/// A router whose failures are all problem answers, with one log line per request at `debug`, that
/// refuses a request two readers could read differently.
func buildRouter() -> Router<CouponRequestContext> {
    let router = Router(context: CouponRequestContext.self)
    router.middlewares.add(ProblemMiddleware())
    router.middlewares.add(LogRequestsMiddleware(.debug))
    router.middlewares.add(UnambiguousRequestMiddleware())
    return router
}

/// JWT identity when a JWKS file is given, else nil (trusted mode), said at start either way.
private func buildTokenVerifier(_ arguments: some AppArguments, checkout: Bool, logger: Logger) async throws -> TokenVerifier? {
    guard let keys = arguments.authJWKS else {
        logger.warning(
            "no JWKS (--auth-jwks, --auth-jwks-url): user routes trust the user_id of the body and path; run behind a gateway that authenticates users")
        return nil
    }
    guard let issuer = arguments.authIssuer, let audience = arguments.authAudience else {
        throw ConfigurationError("--auth-jwks needs --auth-issuer and --auth-audience")
    }
    let tokens = try await TokenVerifier(
        .init(
            keys: keys, issuer: issuer, audience: audience, userClaim: arguments.authUserClaim,
            maxLifetime: Double(arguments.authMaxTokenLifetime.components.seconds)),
        logger: logger)
    logger.info(
        "user routes need a bearer JWT", metadata: [
            "jwks": "\(keys)", "kids": "\(tokens.keyIDs)", "issuer": "\(issuer)", "audience": "\(audience)",
            "user_claim": "\(arguments.authUserClaim)", "max_token_lifetime": "\(arguments.authMaxTokenLifetime)", "checkout_token": "\(checkout)",
        ])
    return tokens
}
