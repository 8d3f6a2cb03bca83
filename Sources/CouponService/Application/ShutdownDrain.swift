import Logging
import ServiceLifecycle
import Synchronization

/// The first thing to stop on SIGTERM, before the HTTP server: `/readyz` answers 503 so load
/// balancers stop sending, and the server keeps serving for `duration`.
///
/// Without it the server quiesces at once, and Hummingbird closes every connection whose request it
/// has not read yet, as idle: a request already sent would get no answer. Place it after the
/// application in the service group, so that it is shut down first.
public final class ShutdownDrain: Service, Sendable {
    let duration: Duration
    let logger: Logger
    private let draining = Mutex(false)

    public init(duration: Duration, logger: Logger) {
        self.duration = duration
        self.logger = logger
    }

    public var isDraining: Bool { draining.withLock { $0 } }

    public func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled: no graceful shutdown to drain for
        }
        draining.withLock { $0 = true }
        logger.info("draining before shutdown: /readyz answers 503", metadata: ["drain": "\(duration)"])
        try? await Task.sleep(for: duration)
        logger.info("stopping the HTTP server; requests in flight finish first")
    }
}
