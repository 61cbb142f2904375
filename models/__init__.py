"""What training and live must agree on: landmarks, framing, the sketch, retargeting,
the networks and the model artifact. Nothing in here touches a device."""
