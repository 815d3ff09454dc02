import WeftHTTP2
import WeftTLS
print("weft (nghttp2 \(NGHTTP2Library.version), \(OpenSSLLibrary.version))")
