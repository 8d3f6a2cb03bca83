import Hummingbird

/// Serves `router` on 127.0.0.1, at a port the system picks, for as long as `body` runs; `body` gets
/// the port. For the servers a test plays: a webhook receiver, an identity provider.
package func withLoopbackServer<T>(_ router: Router<BasicRequestContext>, _ body: (Int) async throws -> T) async throws -> T {
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let app = Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) })
    let server = Task { try await app.runService(gracefulShutdownSignals: []) }
    defer { server.cancel() }
    var iterator = ports.makeAsyncIterator()
    guard let port = await iterator.next() else { throw CancellationError() }
    return try await body(port)
}
