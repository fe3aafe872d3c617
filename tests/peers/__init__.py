"""Local servers on 127.0.0.1 that speak SaaS peers' real wire protocols (Twilio, Zalo OA, FCM
push, webhooks, Ollama) and check what they receive; tests start them, c360 talks to them."""
