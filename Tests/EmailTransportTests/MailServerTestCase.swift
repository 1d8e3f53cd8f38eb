import ChorusTestKit
import XCTest

/// A test case whose tests share one set of real mail servers (Dovecot + Postfix), started
/// once per test class and stopped after its last test.
class MailServerTestCase: XCTestCase {
    nonisolated(unsafe) private static var servers: MailServers?
    nonisolated(unsafe) private static var startError: Error?

    override class func setUp() {
        super.setUp()
        startError = nil
        do { servers = try MailServers.start() } catch { startError = error }
    }

    override class func tearDown() {
        servers?.stop()
        servers = nil
        super.tearDown()
    }

    /// The running servers; throws why they could not start.
    func mail() throws -> MailServers {
        if let error = MailServerTestCase.startError { throw error }
        return try XCTUnwrap(MailServerTestCase.servers)
    }
}
