@testable import CouponService
import CouponTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

/// `sslmode` and `sslrootcert` against the test cluster, which scripts/lib/postgres.sh serves with a
/// certificate from a private CA (`COUPON_PG_TLS/ca.crt`, for 127.0.0.1); `other-ca.crt` signed nothing.
@Suite(.migratedDatabase) struct DatabaseTLSTests {
    let folder = ProcessInfo.processInfo.environment["COUPON_PG_TLS"] ?? ""

    func url(_ query: String) -> String { query.isEmpty ? TestDatabase.url : "\(TestDatabase.url)?\(query)" }

    /// Whether the listener's kind of connection uses TLS, or the error it failed with.
    func connect(_ query: String) async throws -> Bool {
        let configuration = try DatabaseURL(url(query)).connectionConfiguration(applicationName: "coupon-tls-test")
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: TestDatabase.logger)
        defer { Task { try? await connection.close() } }
        let rows = try await connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: TestDatabase.logger)
        for try await ssl in rows.decode(Bool.self) { return ssl }
        throw TestSetupError("no pg_stat_ssl row for this backend")
    }

    func requireTLSCluster() throws {
        guard FileManager.default.fileExists(atPath: "\(folder)/ca.crt") else {
            throw TestSetupError("COUPON_PG_TLS has no ca.crt: run the tests with scripts/test.sh, which serves TLS")
        }
    }

    @Test func encryptingModesConnectWithoutCheckingTheCertificate() async throws {
        try requireTLSCluster()
        #expect(try await connect("sslmode=disable") == false)
        #expect(try await connect("") == true, "without sslmode, prefer: TLS when the server offers it, as in libpq")
        for mode in ["allow", "prefer", "require"] {
            #expect(try await connect("sslmode=\(mode)") == true, "\(mode) encrypts and trusts any certificate, as in libpq")
        }
    }

    @Test func verifyingModesTrustTheNamedCAOnly() async throws {
        try requireTLSCluster()
        for mode in ["verify-ca", "verify-full", "require"] {
            #expect(try await connect("sslmode=\(mode)&sslrootcert=\(folder)/ca.crt") == true, "\(mode) with the CA that signed it")
            await #expect(throws: (any Error).self, "\(mode) with a CA that did not sign it") {
                try await connect("sslmode=\(mode)&sslrootcert=\(folder)/other-ca.crt")
            }
        }
        await #expect(throws: (any Error).self, "the system's roots do not know a private CA") {
            try await connect("sslmode=verify-full")
        }
    }

    @Test func thePoolUsesTheSameSettings() async throws {
        try requireTLSCluster()
        let ssl = try await withPostgresClient(databaseURL: url("sslmode=verify-full&sslrootcert=\(folder)/ca.crt"), logger: TestDatabase.logger) { client in
            let rows = try await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            for try await ssl in rows.decode(Bool.self) { return ssl }
            return false
        }
        #expect(ssl)
    }

    @Test func anUnknownModeIsRefused() {
        #expect(throws: ConfigurationError.self) { try DatabaseURL(url("sslmode=verify")) }
    }
}
