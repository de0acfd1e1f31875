"""What car, phone and server say to each other, shared by all three and importing none of them.

``topics`` (MQTT topic names and payloads), ``httpsig`` (RFC 9421 request signatures),
``client`` (the signing HTTP client), ``bundles`` (key requests and grant bundles), ``b64``
(base64url without padding, the one spelling every link and JSON body uses).
"""
