import Synchronization

/// The database did not answer within the deadline.
struct DeadlineExceeded: Error {}

/// Runs `operation` and gives up after `timeout` on `clock`.
///
/// The operation is not awaited past the deadline: a query stuck on a dead connection or a pool
/// waiting for a database that is down must not hold an HTTP answer hostage. A late operation still
/// finishes in the background; an issuance that commits late is found again by the user's retry.
func withDeadline<T: Sendable, C: Clock<Duration>>(
    _ timeout: Duration, clock: C = ContinuousClock(), _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withCheckedThrowingContinuation { continuation in
        race.start(continuation)
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            race.finish(with: result)
        }
        race.arm(Task {
            guard (try? await clock.sleep(until: clock.now.advanced(by: timeout), tolerance: nil)) != nil else { return }
            if race.finish(with: .failure(DeadlineExceeded())) { work.cancel() }
        })
    }
}

/// Whoever finishes first, the work or the timer, answers; the other is told it lost.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var timer: Task<Void, Never>?
    }
    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// Keeps the timer so that the work can stop it; stops it at once when the work already answered.
    func arm(_ timer: Task<Void, Never>) {
        let answered = state.withLock { state in
            state.timer = timer
            return state.continuation == nil
        }
        if answered { timer.cancel() }
    }

    @discardableResult
    func finish(with result: Result<T, any Error>) -> Bool {
        let (continuation, timer) = state.withLock { state in
            defer { state.continuation = nil }
            return (state.continuation, state.timer)
        }
        guard let continuation else { return false }
        timer?.cancel()
        continuation.resume(with: result)
        return true
    }
}
