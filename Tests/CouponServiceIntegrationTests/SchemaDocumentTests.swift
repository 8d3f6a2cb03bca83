@testable import CouponService
import CouponTestSupport
import Foundation
import Testing

/// docs/schema.sql is the schema a fresh database has after every migration (scripts/schema.sh).
@Suite(.migratedDatabase) struct SchemaDocumentTests {
    static let document = TestDatabase.migrationsFolder.deletingLastPathComponent().appending(path: "docs/schema.sql")

    /// What differs between two dumps of the same schema: the script's header, pg_dump's version lines
    /// and the random key of its `\restrict` lines.
    static func normalized(_ text: String) -> [Substring] {
        text.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            !line.hasPrefix("-- schema.sh:") && !line.hasPrefix("-- Dumped from ") && !line.hasPrefix("-- Dumped by ")
                && !line.hasPrefix("\\restrict ") && !line.hasPrefix("\\unrestrict ")
        }
    }

    @Test func theSchemaDocumentIsCurrent() async throws {
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            let dump = Process()
            dump.executableURL = URL(filePath: "/usr/bin/env")
            dump.arguments = ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", url]
            let output = Pipe()
            dump.standardOutput = output
            try dump.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            dump.waitUntilExit()
            try #require(dump.terminationStatus == 0, "pg_dump failed")
            let current = Self.normalized(String(decoding: data, as: UTF8.self))
            let written = Self.normalized(try String(contentsOf: Self.document, encoding: .utf8))
            let firstDifference = zip(current, written).enumerated().first { $0.element.0 != $0.element.1 }
            #expect(
                firstDifference == nil && current.count == written.count,
                "docs/schema.sql is stale (run scripts/schema.sh); first difference at line \(firstDifference?.offset ?? min(current.count, written.count)): \(firstDifference.map { "\($0.element.0) | \($0.element.1)" } ?? "length")")
        }
    }
}
