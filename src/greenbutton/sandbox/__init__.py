"""Running untrusted model code outside a serving process: a scrubbed environment, a private
work folder, no view of the platform's files, no network, another user when root."""
