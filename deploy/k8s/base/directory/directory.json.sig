{"algorithm": "Ed25519", "key_id": "0f6a63a3d9454354", "signature": "vLXT/wxM6FufAtNTBSMdo+NJYNXG8iuHUp9qqXzMYQ1hR+5ML5WgBFwSvwJ+KJ10cxMK6SsUAUrxRFIg3qK6Dg=="}
