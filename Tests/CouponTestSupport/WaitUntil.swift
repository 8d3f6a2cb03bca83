/// Asks `condition` until it holds or `timeout` has passed, and says which: every wait in the tests is
/// bounded, so a condition that never comes fails its test instead of hanging the suite.
package func waitUntil(
    _ timeout: Duration = .seconds(10), every interval: Duration = .milliseconds(2), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
