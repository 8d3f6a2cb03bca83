import PostgresNIO

/// Decides which database errors mean "the database is unreachable" (503, retry) rather than a bug.
enum DatabaseFailure {
    static func problem(for error: any Error) -> CouponProblem? {
        isUnavailable(error) ? .unavailable : nil
    }

    static func isUnavailable(_ error: any Error) -> Bool {
        switch error {
        case is DeadlineExceeded:
            return true
        case let error as PostgresTransactionError:
            return [error.beginError, error.closureError, error.commitError].contains { $0.map(isUnavailable) ?? false }
        case let error as PSQLError:
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
                return true
            case .server:
                // Class 08: connection exception; 57P01..57P03: shutdown, crash recovery, cannot connect now.
                let state = error.serverInfo?[.sqlState] ?? ""
                return state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300"].contains(state)
            default:
                return false
            }
        default:
            return false
        }
    }
}
