import COpenSSL

/// PEM text in and out of OpenSSL objects, through memory BIOs.
enum PEM {
    /// Every certificate in `text`, in order; throws if there is none.
    static func certificates(_ text: String, what: String) throws -> [OpaquePointer] {
        let bio = try memoryBIO(text)
        defer { BIO_free(bio) }
        var certificates: [OpaquePointer] = []
        while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) {
            certificates.append(certificate)
        }
        ERR_clear_error()  // the read that ends the loop leaves "no start line"
        guard !certificates.isEmpty else {
            throw OpenSSLError(operation: "reading \(what)", detail: "no PEM certificate in it")
        }
        return certificates
    }

    static func privateKey(_ text: String, what: String) throws -> OpaquePointer {
        let bio = try memoryBIO(text)
        defer { BIO_free(bio) }
        return try check(PEM_read_bio_PrivateKey(bio, nil, nil, nil), "reading \(what): no PEM private key in it")
    }

    static func text(of certificate: OpaquePointer) throws -> String {
        try write { PEM_write_bio_X509($0, certificate) }
    }

    static func text(ofPrivateKey key: OpaquePointer) throws -> String {
        try write { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) }
    }

    private static func memoryBIO(_ text: String) throws -> OpaquePointer {
        let bio = try check(BIO_new(BIO_s_mem()), "BIO_new")
        let written = text.utf8.withContiguousStorageIfAvailable { BIO_write(bio, $0.baseAddress, Int32($0.count)) }
            ?? Array(text.utf8).withUnsafeBytes { BIO_write(bio, $0.baseAddress, Int32($0.count)) }
        guard written == text.utf8.count else {
            BIO_free(bio)
            throw OpenSSLError.drain("BIO_write")
        }
        return bio
    }

    private static func write(_ body: (OpaquePointer) -> Int32) throws -> String {
        let bio = try check(BIO_new(BIO_s_mem()), "BIO_new")
        defer { BIO_free(bio) }
        try check(body(bio), "writing PEM")
        let length = Int(BIO_ctrl_pending(bio))
        var bytes = [UInt8](repeating: 0, count: length)
        let read = bytes.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(length)) }
        guard read == length else { throw OpenSSLError.drain("reading PEM") }
        return String(decoding: bytes, as: UTF8.self)
    }
}
