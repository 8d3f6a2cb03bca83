import Foundation
import Hummingbird

/// Events that leave the building (docs/events.md): the pull feed (an admin, or the events' reader)
/// and the webhook endpoints (admin).
struct EventController<Context: RequestContext>: Sendable {
    let feed: EventFeed
    let outbox: Outbox
    let webhooks: WebhookStore
    let admin: AdminGuard
    /// The events' reader (`--events-token-file`), besides the admin.
    let reader: ServiceTokens?

    func addRoutes(to router: Router<Context>) {
        router.route("/v1/events") { $0.on(.get, use: events) }
        router.route("/v1/webhooks") {
            $0.on(.get, use: list)
            $0.on(.post, use: register)
        }
        router.route("/v1/webhooks/:id") { $0.on(.delete, use: delete) }
    }

    /// A page of the feed after `after`, up to the settled position: at once, or once an event comes
    /// within `wait` seconds. `next` is the cursor to continue from.
    @Sendable func events(_ request: Request, context: Context) async throws -> EventBatchJSON {
        try admin.check(request, or: reader, name: "events")
        let query = request.uri.queryParameters
        let after = try RequestParser.eventCursor(query.get("after"))
        let limit = try RequestParser.limit(query.get("limit"), in: 1...1_000, fallback: 100)
        let wait = try RequestParser.eventWait(query.get("wait"))
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: wait)
        while true {
            let wakeUps = feed.bell.wakeUps
            let events = try await outbox.events(after: after, through: try await settled(), limit: limit)
            let left = clock.now.duration(to: deadline)
            if !events.isEmpty || left <= .zero { return EventBatchJSON(events: events, next: events.last?.cursor ?? after) }
            // Woken by an event's commit (this instance's, or another's NOTIFY).
            await feed.sleep(since: wakeUps, upTo: left)
        }
    }

    /// The feed's settled position; 501 on a Citus cluster.
    func settled() async throws -> Int64 {
        do { return try await feed.advance() } catch EventFeedError.distributed { throw CouponProblem.eventsUnavailable }
    }

    /// Registers an endpoint, delivered the events after the feed's settled position; its secret is in
    /// this answer only.
    @Sendable func register(_ request: Request, context: Context) async throws -> EditedResponse<WebhookResponse> {
        try admin.check(request)
        let (url, types) = try RequestParser.newWebhook(from: try await request.jsonBody())
        let (webhook, secret) = try await webhooks.register(url: url, types: types, from: try await settled())
        context.logger.info("webhook registered", metadata: ["webhook_id": "\(webhook.id)", "url": "\(url)"])
        // Every instance's delivery looks at the endpoints again (`WebhookDelivery`).
        feed.database.eventsCommitted()
        return EditedResponse(
            status: .created, headers: [.location: "/v1/webhooks/\(webhook.id)"], response: WebhookResponse(webhook: webhook, secret: secret))
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> WebhooksResponse {
        try admin.check(request)
        return WebhooksResponse(webhooks: try await webhooks.all())
    }

    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        try admin.check(request)
        guard try await webhooks.delete(id: try RequestParser.webhookID(context.parameters.get("id"))) else {
            throw CouponProblem.webhookNotFound
        }
        return Response(status: .noContent)
    }
}

/// An endpoint: its secret only in the answer that registered it.
struct WebhookResponse: ResponseEncodable {
    var webhook: Webhook
    var secret: String?

    enum CodingKeys: String, CodingKey {
        case id, url, types, secret, created_at, pending, last_delivered_at, failing_since, gave_up_at
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(webhook.id, forKey: .id)
        try container.encode(webhook.url, forKey: .url)
        try container.encode(webhook.types?.map(\.rawValue), forKey: .types)
        try container.encode(RFC3339.string(webhook.createdAt), forKey: .created_at)
        if let secret {
            try container.encode(secret, forKey: .secret)
        } else {
            try container.encode(webhook.pending, forKey: .pending)
            try container.encode(webhook.lastDeliveredAt.map(RFC3339.string), forKey: .last_delivered_at)
            try container.encode(webhook.failingSince.map(RFC3339.string), forKey: .failing_since)
            try container.encode(webhook.gaveUpAt.map(RFC3339.string), forKey: .gave_up_at)
        }
    }
}

/// `GET /v1/webhooks`: every endpoint with its delivery state, never its secret.
struct WebhooksResponse: ResponseEncodable {
    var webhooks: [Webhook]

    enum CodingKeys: String, CodingKey { case webhooks }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(webhooks.map { WebhookResponse(webhook: $0) }, forKey: .webhooks)
    }
}

