import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Delivers the feed to every endpoint this instance holds the lease of, in feed order, at least
/// once, signed (docs/events.md).
///
/// Every `renewEvery` it renews its leases and takes those that ran out, so when an instance dies its
/// endpoints move to another within the lease and one renewal (4 s and 1 s). Per endpoint one task
/// sends a batch, waits for the answer, and only after a 2xx records the batch acknowledged and sends
/// the next: an endpoint sees events in feed order, and a kill repeats at most the batch in flight. A failure is retried
/// after a backoff from 1 s, doubling, jittered, at most 5 minutes, until `--webhook-give-up`.
struct WebhookDelivery: Service {
    let webhooks: WebhookStore
    let outbox: Outbox
    let feed: EventFeed
    let settings: EventSettings
    let metrics: CouponMetrics
    let logger: Logger
    /// This instance, as leases name it: `host/pid/random`.
    let holder = "\(ProcessInfo.processInfo.hostName)/\(ProcessInfo.processInfo.processIdentifier)/\(UUID().uuidString.prefix(8).lowercased())"
    var renewEvery: Duration { settings.lease / 4 }
    /// After a batch that was not full, the next read waits this long, so that during a sale an
    /// endpoint gets fuller batches every `linger` instead of one per commit (each read costs a look
    /// at the feed's horizon, a query, a POST and the acknowledgement's UPDATE); a quiet endpoint's
    /// first event still goes at once.
    static let linger: Duration = .milliseconds(50)

    func run() async throws {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5)))
        configuration.httpVersion = .http1Only
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await leaseLoop(http) }
                await group.waitForAll()
            }
        }
        try? await webhooks.release(holder: holder)
        try? await http.shutdown()
    }

    /// Renews and takes leases; starts a task per endpoint taken, stops it when its lease is gone.
    /// While any endpoint exists it looks every `renewEvery`, so a dead instance's endpoints move
    /// within the lease; with none, only when the bell rings (a registration rings it, on every
    /// instance through NOTIFY), at most every `renewEvery`, and every minute.
    private func leaseLoop(_ http: HTTPClient) async {
        var running: [Int64: Task<Void, Never>] = [:]
        // Endpoints whose task ended on its own (its lease lost under it, or given up): started again
        // while this instance holds the lease, or an endpoint whose lease came back would go undelivered.
        let ended = EndedDeliveries()
        defer { for task in running.values { task.cancel() } }
        while !Task.isCancelled {
            let wakeUps = feed.bell.wakeUps
            let looked = ContinuousClock.now
            var endpoints = 1
            do {
                let leases = try await webhooks.lease(holder: holder, for: settings.lease)
                endpoints = leases.endpoints
                metrics.webhooksFailing.record(leases.failing)
                let held = Set(leases.held.map(\.id))
                for (id, task) in running where !held.contains(id) {
                    task.cancel()
                    running[id] = nil
                    _ = ended.take(id)
                    metrics.webhookLag(id).record(0)
                }
                for lease in leases.held where running[lease.id] == nil || ended.take(lease.id) {
                    logger.info("delivering events", metadata: ["webhook_id": "\(lease.id)", "from": "\(lease.delivered)"])
                    running[lease.id] = Task {
                        await deliver(lease, http)
                        if !Task.isCancelled { ended.insert(lease.id) }
                    }
                }
            } catch {
                guard !Task.isCancelled else { break }
                logger.debug("could not renew webhook leases", metadata: ["error": "\(DatabaseFailure.logged(error))"])
            }
            if endpoints == 0 { await feed.bell.sleep(since: wakeUps, upTo: .seconds(60)) }
            try? await Task.sleep(until: looked.advanced(by: renewEvery), clock: .continuous)
        }
    }

    /// Delivers to one endpoint until cancelled (its lease gone) or given up.
    private func deliver(_ lease: WebhookLease, _ http: HTTPClient) async {
        var cursor = lease.delivered
        var attempts = lease.attempts
        var retryIn = lease.retryIn
        let lag = metrics.webhookLag(lease.id)
        while !Task.isCancelled {
            do {
                let wakeUps = feed.bell.wakeUps
                // Behind the settled position (a busy sale), no need to ask the database where it is.
                let settled = feed.settled > cursor.position ? feed.settled : try await feed.advance()
                let events = try await outbox.events(after: cursor, through: settled, limit: settings.webhookBatch, types: lease.types)
                guard let first = events.first, let last = events.last else {
                    lag.record(0)
                    // None of its types up to the settled position: it has them all.
                    let everything = EventCursor(position: settled)
                    if everything > cursor, lease.types != nil {
                        guard try await webhooks.advance(id: lease.id, holder: holder, through: everything, delivered: false) else { return }
                        cursor = everything
                    }
                    await feed.sleep(since: wakeUps, upTo: settings.lease)
                    continue
                }
                lag.record(max(0, Date().timeIntervalSince(first.occurredAt)))
                if retryIn > .zero { try await Task.sleep(for: retryIn) }
                let outcome = await post(events, to: lease, http)
                metrics.webhookDeliveries[outcome]?.increment()
                if outcome == .acknowledged {
                    guard try await webhooks.advance(id: lease.id, holder: holder, through: last.cursor, delivered: true) else { return }
                    cursor = last.cursor
                    attempts = 0
                    retryIn = .zero
                    if events.count < settings.webhookBatch { try? await Task.sleep(for: Self.linger) }
                } else {
                    attempts += 1
                    retryIn = Self.backoff(afterAttempts: attempts)
                    if try await webhooks.failed(id: lease.id, holder: holder, backoff: retryIn, giveUp: settings.webhookGiveUp) {
                        logger.warning("webhook given up", metadata: ["webhook_id": "\(lease.id)", "attempts": "\(attempts)"])
                        return
                    }
                    logger.info(
                        "webhook delivery failed; retrying",
                        metadata: ["webhook_id": "\(lease.id)", "outcome": "\(outcome.rawValue)", "retry_in": "\(retryIn)"])
                }
            } catch {
                guard !Task.isCancelled else { return }
                logger.debug("webhook delivery paused", metadata: ["webhook_id": "\(lease.id)", "error": "\(DatabaseFailure.logged(error))"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// The endpoints whose delivery task has ended on its own.
    private final class EndedDeliveries: Sendable {
        private let ids = Mutex<Set<Int64>>([])
        func insert(_ id: Int64) { ids.withLock { _ = $0.insert(id) } }
        /// Whether `id` had ended, forgetting it.
        func take(_ id: Int64) -> Bool { ids.withLock { $0.remove(id) != nil } }
    }

    /// How a delivery ended.
    enum Outcome: String, CaseIterable, Sendable {
        /// Answered 2xx within the timeout.
        case acknowledged
        /// Answered, but not 2xx.
        case refused
        /// Not answered within the timeout, or the connection failed.
        case unreachable
    }

    /// One delivery: the batch, signed, answered within `--webhook-timeout`.
    private func post(_ events: [CouponEvent], to lease: WebhookLease, _ http: HTTPClient) async -> Outcome {
        do {
            let body = try EventBatchJSON(events: events).body()
            var request = HTTPClientRequest(url: lease.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "coupon-server/\(couponServiceVersion)")
            request.headers.add(name: "Coupon-Signature", value: Self.signature(of: body, secret: lease.secret, at: Date()))
            request.headers.add(name: "Coupon-Delivery", value: "\(lease.id)-\(events[0].cursor)-\(events[events.count - 1].cursor)")
            request.body = .bytes(body)
            let response = try await http.execute(request, timeout: TimeAmount(settings.webhookTimeout))
            // The answer's body is read and dropped, up to a bound.
            var read = 0
            for try await part in response.body {
                read += part.readableBytes
                if read > 65_536 { break }
            }
            return (200..<300).contains(response.status.code) ? .acknowledged : .refused
        } catch {
            return .unreachable
        }
    }

    /// `t=<unix seconds>,v1=<lowercase hex HMAC-SHA256 of "<t>.<body>">`, keyed with the secret.
    static func signature(of body: ByteBuffer, secret: String, at date: Date) -> String {
        let timestamp = String(Int64(date.timeIntervalSince1970))
        var signed = Data(timestamp.utf8)
        signed.append(UInt8(ascii: "."))
        signed.append(contentsOf: body.readableBytesView)
        let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(timestamp),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// 1 s after the first failure, doubling, at most 5 minutes, each between half and all of it.
    static func backoff(afterAttempts attempts: Int) -> Duration {
        let full = min(300.0, pow(2.0, Double(min(max(attempts - 1, 0), 16))))
        return .milliseconds(Int64(full * Double.random(in: 0.5...1.0) * 1000))
    }
}
