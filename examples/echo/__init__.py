"""An echo bot on application-hosted media: it answers and sends back every 20 ms of audio it hears."""
